#pragma once

// Checkpoints that travel. A trial's checkpoint after epoch E is the file
// "<stem>-e<E>.pt" ("job3-trial7-e4.pt"), written by the worker that trained it. After a
// segment the worker uploads it in chunks to the controller's CheckpointStore; a segment
// that resumes on another worker gets it in chunks from there before its assignment. One
// file per epoch, so a segment whose result was lost can be rerun from the checkpoint at
// its start even though its worker has already written the one at its end.
//
// Bytes only: no LibTorch here. Chunks are checked (order, size, SHA-256 of the whole file)
// as they arrive and streamed to disk, so memory holds one chunk whatever the file's size.

#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "tuner/sha256.h"
#include "tuner/status.h"

namespace topotune {

// One piece of a checkpoint file on the wire, in either direction.
struct CheckpointChunk {
  int64_t trial_id = 0;
  int attempt = 0;   ///< the segment it belongs to: written by (upload) or resumed by (download)
  std::string stem;  ///< "job3-trial7"
  int epoch = 0;     ///< the epochs the checkpoint holds
  int64_t offset = 0;
  int64_t total_bytes = 0;  ///< of the whole file
  std::string data;
  std::string sha256;  ///< of the whole file, in the last chunk only
  bool last() const { return offset + static_cast<int64_t>(data.size()) == total_bytes; }
};

constexpr size_t kCheckpointChunkBytes = 512 * 1024;  ///< 683 KiB as base64: fits a frame

// "<stem>-e<epoch>.pt".
std::string CheckpointFileName(const std::string& stem, int epoch);
// A stem names a file in a checkpoint folder: 1-128 of [A-Za-z0-9_-].
bool ValidCheckpointStem(const std::string& stem);

// Writes one file from chunks that arrive in order, into "<path>.partial", renamed to
// `path` once the last chunk's total size and SHA-256 check out. The partial file is
// removed if the writer is destroyed before that. Not thread-safe.
class ChunkedFileWriter {
 public:
  ChunkedFileWriter(std::string path, int64_t total_bytes);
  ~ChunkedFileWriter();
  ChunkedFileWriter(const ChunkedFileWriter&) = delete;
  ChunkedFileWriter& operator=(const ChunkedFileWriter&) = delete;

  // Adds the next chunk. True once the file is complete and in place. InvalidArgument if
  // the chunk is out of order, runs past total_bytes or ends with another digest; IOError
  // if the disk refuses. After an error the writer is unusable.
  StatusOr<bool> Append(const CheckpointChunk& chunk);

 private:
  std::string path_;
  std::string partial_;
  int64_t total_bytes_;
  int64_t written_ = 0;
  std::ofstream out_;
  Sha256 hash_;
  bool done_ = false;
  bool failed_ = false;
};

// Reads one file as chunks, the last with the file's SHA-256. Not thread-safe.
class ChunkedFileReader {
 public:
  // `header` gives the chunks' trial, attempt, stem and epoch. IOError if it cannot be read.
  static StatusOr<std::unique_ptr<ChunkedFileReader>> Open(const std::string& path,
                                                           const CheckpointChunk& header);
  // The next chunk, or nullopt after the last. IOError if the file changed size under us.
  StatusOr<std::optional<CheckpointChunk>> Next();

 private:
  ChunkedFileReader() = default;
  std::string path_;
  std::ifstream in_;
  CheckpointChunk header_;
  Sha256 hash_;
  bool finished_ = false;
};

// A folder of "<stem>-e<epoch>.pt" files: the controller's, which workers upload to after
// their segments, and a worker's own, which the controller sends checkpoints to. A file
// received in chunks is there only once complete and verified. Not thread-safe: the
// Dispatcher (or the worker agent's network thread) serialises calls.
class CheckpointStore {
 public:
  // Creates `dir` if needed and removes uploads a previous run left unfinished.
  // `max_bytes` caps one checkpoint. IOError if the folder cannot be used.
  static StatusOr<std::unique_ptr<CheckpointStore>> Open(const std::string& dir, int64_t max_bytes);
  CheckpointStore(const CheckpointStore&) = delete;
  CheckpointStore& operator=(const CheckpointStore&) = delete;

  bool Has(const std::string& stem, int epoch) const;
  std::string PathOf(const std::string& stem, int epoch) const;
  int64_t max_bytes() const { return max_bytes_; }

  // One chunk of an upload by `uploader` (a worker id), who uploads one file at a time: a
  // chunk at offset 0 begins a new upload and drops an unfinished one. InvalidArgument if
  // the chunk does not continue its upload, the file is over max_bytes, or its digest is
  // wrong; IOError if the disk refuses.
  Status Receive(const std::string& uploader, const CheckpointChunk& chunk);
  // Drops the unfinished upload of `uploader`, if any (it disconnected).
  void AbortUpload(const std::string& uploader);
  // Deletes the checkpoints of `stem` below `epoch`. Returns how many were removed.
  int Discard(const std::string& stem, int epoch);
  // Deletes the checkpoints nobody needs any more: `keep` maps the stem of every trial that
  // may still resume to the lowest epoch it may resume from. Every other checkpoint file,
  // and those below their stem's epoch, are removed. Returns how many were removed.
  int Collect(const std::map<std::string, int>& keep);

 private:
  CheckpointStore(std::string dir, int64_t max_bytes);
  // Removes the checkpoint files for which doomed(stem, epoch) holds; returns how many.
  int RemoveWhere(const std::function<bool(const std::string&, int)>& doomed);
  std::string dir_;
  int64_t max_bytes_;
  struct Upload {
    std::string stem;
    int epoch = 0;
    std::unique_ptr<ChunkedFileWriter> writer;
  };
  std::map<std::string, Upload> uploads_;  // by uploader
};

}  // namespace topotune
