#include "tuner/checkpoint_store.h"

#include <cctype>
#include <filesystem>
#include <system_error>
#include <vector>

namespace topotune {
namespace {

namespace fs = std::filesystem;

constexpr char kPartialSuffix[] = ".partial";

// The stem and epoch of a file named "<stem>-e<epoch>.pt"; nullopt for any other name.
std::optional<std::pair<std::string, int>> ParseCheckpointFileName(const std::string& name) {
  constexpr char kSuffix[] = ".pt";
  if (name.size() < 6 || name.compare(name.size() - 3, 3, kSuffix) != 0) return std::nullopt;
  const std::string base = name.substr(0, name.size() - 3);
  const size_t dash = base.rfind("-e");
  if (dash == std::string::npos || dash + 2 == base.size() || base.size() - dash > 9) {
    return std::nullopt;
  }
  int epoch = 0;
  for (size_t i = dash + 2; i < base.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(base[i]))) return std::nullopt;
    epoch = epoch * 10 + (base[i] - '0');
  }
  std::string stem = base.substr(0, dash);
  if (!ValidCheckpointStem(stem)) return std::nullopt;
  return std::make_pair(std::move(stem), epoch);
}

}  // namespace

std::string CheckpointFileName(const std::string& stem, int epoch) {
  return stem + "-e" + std::to_string(epoch) + ".pt";
}

bool ValidCheckpointStem(const std::string& stem) {
  if (stem.empty() || stem.size() > 128) return false;
  for (char c : stem) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  }
  return true;
}

ChunkedFileWriter::ChunkedFileWriter(std::string path, int64_t total_bytes)
    : path_(std::move(path)), partial_(path_ + kPartialSuffix), total_bytes_(total_bytes) {}

ChunkedFileWriter::~ChunkedFileWriter() {
  if (done_) return;
  out_.close();
  std::error_code ignored;
  fs::remove(partial_, ignored);
}

StatusOr<bool> ChunkedFileWriter::Append(const CheckpointChunk& chunk) {
  if (failed_ || done_) return Status::FailedPrecondition("the transfer of " + path_ + " ended");
  failed_ = true;  // until this chunk is in
  const int64_t size = static_cast<int64_t>(chunk.data.size());
  if (chunk.total_bytes != total_bytes_ || chunk.offset != written_) {
    return Status::InvalidArgument("checkpoint chunk at offset " + std::to_string(chunk.offset) +
                                   " of " + std::to_string(chunk.total_bytes) +
                                   " bytes, expected offset " + std::to_string(written_) + " of " +
                                   std::to_string(total_bytes_));
  }
  if (size == 0 || written_ + size > total_bytes_) {
    return Status::InvalidArgument("checkpoint chunk of " + std::to_string(size) +
                                   " bytes at offset " + std::to_string(written_) +
                                   " does not fit a file of " + std::to_string(total_bytes_));
  }
  if (written_ == 0) {
    std::error_code ec;
    const fs::path parent = fs::path(path_).parent_path();
    if (!parent.empty()) fs::create_directories(parent, ec);
    out_.open(partial_, std::ios::binary | std::ios::trunc);
    if (!out_) return Status::IOError("cannot write " + partial_);
  }
  out_.write(chunk.data.data(), static_cast<std::streamsize>(size));
  if (!out_) return Status::IOError("cannot write " + partial_ + " (disk full?)");
  hash_.Update(chunk.data);
  written_ += size;
  if (written_ < total_bytes_) {
    if (!chunk.sha256.empty()) {
      return Status::InvalidArgument("a checkpoint chunk before the last carries a digest");
    }
    failed_ = false;
    return false;
  }
  out_.close();
  if (!out_) return Status::IOError("cannot write " + partial_ + " (disk full?)");
  const std::string digest = hash_.HexDigest();
  if (digest != chunk.sha256) {
    return Status::InvalidArgument("checkpoint " + fs::path(path_).filename().string() + " of " +
                                   std::to_string(total_bytes_) + " bytes has SHA-256 " + digest +
                                   ", not the announced " + chunk.sha256.substr(0, 64));
  }
  std::error_code ec;
  fs::rename(partial_, path_, ec);
  if (ec) return Status::IOError("cannot rename " + partial_ + ": " + ec.message());
  done_ = true;
  failed_ = false;
  return true;
}

StatusOr<std::unique_ptr<ChunkedFileReader>> ChunkedFileReader::Open(
    const std::string& path, const CheckpointChunk& header) {
  std::unique_ptr<ChunkedFileReader> reader(new ChunkedFileReader());
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) return Status::IOError("cannot read checkpoint " + path + ": " + ec.message());
  if (size == 0) return Status::IOError("checkpoint " + path + " is empty");
  reader->in_.open(path, std::ios::binary);
  if (!reader->in_) return Status::IOError("cannot open checkpoint " + path);
  reader->path_ = path;
  reader->header_ = header;
  reader->header_.offset = 0;
  reader->header_.total_bytes = static_cast<int64_t>(size);
  reader->header_.data.clear();
  reader->header_.sha256.clear();
  return reader;
}

StatusOr<std::optional<CheckpointChunk>> ChunkedFileReader::Next() {
  if (finished_) return std::optional<CheckpointChunk>();
  CheckpointChunk chunk = header_;
  const int64_t left = header_.total_bytes - header_.offset;
  chunk.data.resize(static_cast<size_t>(std::min<int64_t>(left, kCheckpointChunkBytes)));
  in_.read(chunk.data.data(), static_cast<std::streamsize>(chunk.data.size()));
  if (in_.gcount() != static_cast<std::streamsize>(chunk.data.size())) {
    return Status::IOError("checkpoint " + path_ + " shrank while it was sent");
  }
  hash_.Update(chunk.data);
  header_.offset += static_cast<int64_t>(chunk.data.size());
  if (chunk.last()) {
    chunk.sha256 = hash_.HexDigest();
    finished_ = true;
  }
  return std::optional<CheckpointChunk>(std::move(chunk));
}

CheckpointStore::CheckpointStore(std::string dir, int64_t max_bytes)
    : dir_(std::move(dir)), max_bytes_(max_bytes) {}

StatusOr<std::unique_ptr<CheckpointStore>> CheckpointStore::Open(const std::string& dir,
                                                                 int64_t max_bytes) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    return Status::IOError("cannot use checkpoint folder " + dir +
                           (ec ? ": " + ec.message() : ": not a folder"));
  }
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const size_t n = sizeof(kPartialSuffix) - 1;
    if (name.size() > n && name.compare(name.size() - n, n, kPartialSuffix) == 0) {
      fs::remove(entry.path(), ec);
    }
  }
  return std::unique_ptr<CheckpointStore>(new CheckpointStore(dir, max_bytes));
}

std::string CheckpointStore::PathOf(const std::string& stem, int epoch) const {
  return (fs::path(dir_) / CheckpointFileName(stem, epoch)).string();
}

bool CheckpointStore::Has(const std::string& stem, int epoch) const {
  std::error_code ec;
  return fs::is_regular_file(PathOf(stem, epoch), ec);
}

Status CheckpointStore::Receive(const std::string& uploader, const CheckpointChunk& chunk) {
  if (chunk.total_bytes > max_bytes_) {
    AbortUpload(uploader);
    return Status::InvalidArgument("checkpoint of " + std::to_string(chunk.total_bytes) +
                                   " bytes is over the store's limit of " +
                                   std::to_string(max_bytes_));
  }
  if (!ValidCheckpointStem(chunk.stem)) {
    return Status::InvalidArgument("checkpoint stem must be 1-128 of [A-Za-z0-9_-]");
  }
  if (chunk.offset == 0) {
    Upload& upload = uploads_[uploader];
    upload.stem = chunk.stem;
    upload.epoch = chunk.epoch;
    upload.writer =
        std::make_unique<ChunkedFileWriter>(PathOf(chunk.stem, chunk.epoch), chunk.total_bytes);
  }
  auto it = uploads_.find(uploader);
  if (it == uploads_.end() || it->second.stem != chunk.stem || it->second.epoch != chunk.epoch) {
    AbortUpload(uploader);
    return Status::InvalidArgument("checkpoint chunk at offset " + std::to_string(chunk.offset) +
                                   " of " + CheckpointFileName(chunk.stem, chunk.epoch) +
                                   ", whose upload did not begin");
  }
  StatusOr<bool> complete = it->second.writer->Append(chunk);
  if (!complete.ok() || *complete) uploads_.erase(it);
  return complete.status();
}

void CheckpointStore::AbortUpload(const std::string& uploader) { uploads_.erase(uploader); }

int CheckpointStore::Discard(const std::string& stem, int epoch) {
  return RemoveWhere([&](const std::string& s, int e) { return s == stem && e < epoch; });
}

int CheckpointStore::Collect(const std::map<std::string, int>& keep) {
  return RemoveWhere([&](const std::string& stem, int epoch) {
    auto needed = keep.find(stem);
    return needed == keep.end() || epoch < needed->second;
  });
}

int CheckpointStore::RemoveWhere(const std::function<bool(const std::string&, int)>& doomed) {
  std::error_code ec;
  std::vector<fs::path> paths;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir_, ec)) {
    const auto parsed = ParseCheckpointFileName(entry.path().filename().string());
    if (parsed && doomed(parsed->first, parsed->second)) paths.push_back(entry.path());
  }
  int removed = 0;
  for (const fs::path& path : paths) removed += fs::remove(path, ec) ? 1 : 0;
  return removed;
}

}  // namespace topotune
