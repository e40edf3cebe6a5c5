// Checkpoints that travel (tuner/checkpoint_store.h): chunked transfer with integrity
// checks, the controller's store, the frames that carry chunks, and an engine that resumes
// a trial on any worker once the store holds its checkpoint.

#include "tuner/checkpoint_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "api/protocol.h"
#include "tests/memory_journal.h"
#include "tuner/job_engine.h"

namespace topotune {
namespace {

namespace fs = std::filesystem;

// A folder per test, removed afterwards.
class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("topotune-ckpt-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes `size` pseudo-random bytes to `name` in the test's folder; returns them.
  std::string WriteRandomFile(const std::string& name, size_t size) {
    std::mt19937 rng(static_cast<unsigned>(size));
    std::string bytes(size, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
    std::ofstream(dir_ / name, std::ios::binary) << bytes;
    return bytes;
  }
  static std::string Read(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  // Every chunk of the file at `path`, as a reader makes them.
  static std::vector<CheckpointChunk> Chunks(const fs::path& path, const std::string& stem,
                                             int epoch) {
    CheckpointChunk header;
    header.trial_id = 7;
    header.attempt = 2;
    header.stem = stem;
    header.epoch = epoch;
    StatusOr<std::unique_ptr<ChunkedFileReader>> reader =
        ChunkedFileReader::Open(path.string(), header);
    EXPECT_TRUE(reader.ok()) << reader.status().ToString();
    std::vector<CheckpointChunk> chunks;
    if (!reader.ok()) return chunks;
    while (true) {
      StatusOr<std::optional<CheckpointChunk>> next = (*reader)->Next();
      EXPECT_TRUE(next.ok()) << next.status().ToString();
      if (!next.ok() || !next->has_value()) break;
      chunks.push_back(std::move(**next));
    }
    return chunks;
  }

  fs::path dir_;
};

TEST(Sha256Stream, AnySplitOfTheInputGivesTheOneShotDigest) {
  std::string text;
  for (int i = 0; i < 1000; ++i) text += static_cast<char>(i * 7 + 3);
  const std::string expected = Sha256Hex(text);
  for (size_t piece : {1u, 3u, 55u, 63u, 64u, 65u, 128u, 999u}) {
    Sha256 hash;
    for (size_t at = 0; at < text.size(); at += piece) hash.Update(text.substr(at, piece));
    EXPECT_EQ(hash.HexDigest(), expected) << "pieces of " << piece;
  }
}

TEST(CheckpointName, StemsAreSafeFileNames) {
  EXPECT_EQ(CheckpointFileName("job3-trial7", 4), "job3-trial7-e4.pt");
  EXPECT_TRUE(ValidCheckpointStem("job3-trial7"));
  EXPECT_FALSE(ValidCheckpointStem(""));
  EXPECT_FALSE(ValidCheckpointStem("../etc/passwd"));
  EXPECT_FALSE(ValidCheckpointStem("a/b"));
  EXPECT_FALSE(ValidCheckpointStem(".."));
  EXPECT_FALSE(ValidCheckpointStem(std::string(129, 'a')));
}

TEST_F(CheckpointTest, AFileSplitIntoChunksIsRebuiltByteForByte) {
  const std::string bytes = WriteRandomFile("source.pt", 2 * kCheckpointChunkBytes + 12345);
  const std::vector<CheckpointChunk> chunks = Chunks(dir_ / "source.pt", "job1-trial0", 3);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_TRUE(chunks[0].sha256.empty());
  EXPECT_EQ(chunks[2].sha256, Sha256Hex(bytes));
  ChunkedFileWriter writer((dir_ / "copy.pt").string(), static_cast<int64_t>(bytes.size()));
  for (size_t i = 0; i < chunks.size(); ++i) {
    StatusOr<bool> done = writer.Append(chunks[i]);
    ASSERT_TRUE(done.ok()) << done.status().ToString();
    EXPECT_EQ(*done, i + 1 == chunks.size());
    // Not in place until the last chunk is verified.
    EXPECT_EQ(fs::exists(dir_ / "copy.pt"), i + 1 == chunks.size());
  }
  EXPECT_EQ(Read(dir_ / "copy.pt"), bytes);
  EXPECT_FALSE(fs::exists(dir_ / "copy.pt.partial"));
}

TEST_F(CheckpointTest, OutOfOrderOrCorruptChunksAreRefusedAndLeaveNoFile) {
  const std::string bytes = WriteRandomFile("source.pt", kCheckpointChunkBytes + 10);
  const std::vector<CheckpointChunk> chunks = Chunks(dir_ / "source.pt", "s", 1);
  ASSERT_EQ(chunks.size(), 2u);
  {
    ChunkedFileWriter writer((dir_ / "skipped.pt").string(), chunks[0].total_bytes);
    StatusOr<bool> done = writer.Append(chunks[1]);
    EXPECT_EQ(done.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(done.status().message().find("expected offset 0"), std::string::npos)
        << done.status().message();
  }
  {
    ChunkedFileWriter writer((dir_ / "corrupt.pt").string(), chunks[0].total_bytes);
    ASSERT_TRUE(writer.Append(chunks[0]).ok());
    CheckpointChunk last = chunks[1];
    last.data[3] ^= 0x20;
    StatusOr<bool> done = writer.Append(last);
    EXPECT_EQ(done.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(done.status().message().find("SHA-256"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(dir_ / "skipped.pt"));
  EXPECT_FALSE(fs::exists(dir_ / "corrupt.pt"));
  EXPECT_FALSE(fs::exists(dir_ / "corrupt.pt.partial"));
}

TEST_F(CheckpointTest, TheStoreTakesOneUploadPerUploaderUpToItsSizeLimit) {
  const std::string bytes = WriteRandomFile("w.pt", kCheckpointChunkBytes + 100);
  const std::vector<CheckpointChunk> chunks = Chunks(dir_ / "w.pt", "job2-trial5", 4);
  StatusOr<std::unique_ptr<CheckpointStore>> store =
      CheckpointStore::Open((dir_ / "store").string(), int64_t{1} << 30);
  ASSERT_TRUE(store.ok());
  // Two workers upload at once, interleaved; each upload is its own.
  const std::vector<CheckpointChunk> other = Chunks(dir_ / "w.pt", "job2-trial6", 2);
  ASSERT_TRUE((*store)->Receive("w1", chunks[0]).ok());
  ASSERT_TRUE((*store)->Receive("w2", other[0]).ok());
  EXPECT_FALSE((*store)->Has("job2-trial5", 4));
  ASSERT_TRUE((*store)->Receive("w1", chunks[1]).ok());
  ASSERT_TRUE((*store)->Receive("w2", other[1]).ok());
  EXPECT_TRUE((*store)->Has("job2-trial5", 4));
  EXPECT_TRUE((*store)->Has("job2-trial6", 2));
  EXPECT_EQ(Read((*store)->PathOf("job2-trial5", 4)), bytes);

  // A chunk that continues no upload, and a file over the limit, are refused.
  EXPECT_EQ((*store)->Receive("w3", chunks[1]).code(), Status::Code::kInvalidArgument);
  StatusOr<std::unique_ptr<CheckpointStore>> small =
      CheckpointStore::Open((dir_ / "small").string(), 1000);
  ASSERT_TRUE(small.ok());
  Status over = (*small)->Receive("w1", chunks[0]);
  EXPECT_EQ(over.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(over.message().find("over the store's limit of 1000"), std::string::npos);
}

TEST_F(CheckpointTest, CollectKeepsWhatTrialsMayResumeFromAndOpenDropsPartials) {
  const fs::path store_dir = dir_ / "store";
  fs::create_directories(store_dir);
  for (const char* name : {"job1-trial0-e1.pt", "job1-trial0-e3.pt", "job1-trial1-e1.pt",
                           "job2-trial0-e2.pt", "job1-trial0-e9.pt.partial", "notes.txt"}) {
    std::ofstream(store_dir / name) << "x";
  }
  StatusOr<std::unique_ptr<CheckpointStore>> store =
      CheckpointStore::Open(store_dir.string(), 1 << 20);
  ASSERT_TRUE(store.ok());
  EXPECT_FALSE(fs::exists(store_dir / "job1-trial0-e9.pt.partial"));
  // Trial 0 of job 1 may resume from epoch 3 on; nothing else is needed.
  EXPECT_EQ((*store)->Collect({{"job1-trial0", 3}}), 3);
  EXPECT_TRUE((*store)->Has("job1-trial0", 3));
  EXPECT_FALSE((*store)->Has("job1-trial0", 1));
  EXPECT_FALSE((*store)->Has("job1-trial1", 1));
  EXPECT_FALSE((*store)->Has("job2-trial0", 2));
  EXPECT_TRUE(fs::exists(store_dir / "notes.txt"));  // not a checkpoint: not ours to delete
  EXPECT_EQ((*store)->Discard("job1-trial0", 4), 1);
  EXPECT_FALSE((*store)->Has("job1-trial0", 3));
}

TEST_F(CheckpointTest, ChunksRoundTripThroughFramesAndBadOnesAreNamed) {
  WriteRandomFile("f.pt", 1000);
  const std::vector<CheckpointChunk> chunks = Chunks(dir_ / "f.pt", "job1-trial2", 5);
  ASSERT_EQ(chunks.size(), 1u);
  const std::string frame = EncodeFrame(ToJson(CheckpointFrame{chunks[0]}));
  ASSERT_LE(frame.size(), kMaxFrameBytes);
  StatusOr<WorkerFrame> decoded = DecodeWorkerFrame(frame.substr(4));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  const CheckpointChunk& back = std::get<CheckpointFrame>(*decoded).chunk;
  EXPECT_EQ(back.data, chunks[0].data);
  EXPECT_EQ(back.sha256, chunks[0].sha256);
  EXPECT_EQ(back.stem, "job1-trial2");
  EXPECT_EQ(back.epoch, 5);
  StatusOr<ControllerFrame> to_worker = DecodeControllerFrame(frame.substr(4));
  ASSERT_TRUE(to_worker.ok()) << to_worker.status().ToString();

  // A full-size chunk still fits a frame.
  WriteRandomFile("big.pt", kCheckpointChunkBytes * 2);
  const std::vector<CheckpointChunk> big = Chunks(dir_ / "big.pt", "job1-trial2", 5);
  EXPECT_LE(EncodeFrame(ToJson(CheckpointFrame{big[0]})).size(), kMaxFrameBytes);

  const auto error_of = [&](const std::string& field, const nlohmann::json& value) {
    nlohmann::json j = ToJson(CheckpointFrame{chunks[0]});
    j[field] = value;
    StatusOr<WorkerFrame> f = DecodeWorkerFrame(j.dump());
    return f.ok() ? std::string("accepted") : f.status().message();
  };
  EXPECT_NE(error_of("stem", "../../x").find("'stem'"), std::string::npos);
  EXPECT_NE(error_of("data", "not base64!").find("'data'"), std::string::npos);
  EXPECT_NE(error_of("data", "").find("'data'"), std::string::npos);
  EXPECT_NE(error_of("sha256", "abc").find("'sha256'"), std::string::npos);
  EXPECT_NE(error_of("total_bytes", 10).find("runs past"), std::string::npos);
  EXPECT_NE(error_of("offset", -1).find("offset"), std::string::npos);
  EXPECT_NE(error_of("epoch", "5").find("'epoch'"), std::string::npos);
  nlohmann::json long_data = ToJson(CheckpointFrame{chunks[0]});
  long_data["data"] = std::string(kCheckpointChunkBytes * 4 / 3 + 8, 'A');
  StatusOr<WorkerFrame> f = DecodeWorkerFrame(long_data.dump());
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("holds more than"), std::string::npos);
}

// A job of 4 trials (rungs of 1 and 3 epochs) whose best trial runs on w1.
JobSpec PromotionSpec() {
  JobSpec spec;
  spec.model = "lenet";
  spec.space.batch_sizes = {16, 32, 64};
  spec.space.optimizers = {Optimizer::kSgd, Optimizer::kAdam};
  spec.target_accuracy = 0.9;
  spec.max_trials = 4;
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/1, /*reduction_factor=*/3, /*num_rungs=*/2);
  spec.seed = 7;
  return spec;
}

void RunRung(JobEngine& engine, const Assignment& a, double accuracy) {
  for (int e = a.start_epoch + 1; e <= a.trial.target_epochs; ++e) {
    CurvePoint p;
    p.epoch = e;
    p.val_accuracy = accuracy;
    p.compute_s = 1.0;
    ASSERT_TRUE(engine.OnEpoch(a.trial.id, p).ok());
  }
  ASSERT_TRUE(
      engine.OnSegmentEnded({a.trial.id, a.trial.attempt, SegmentStatus::kCompleted, ""}, 0).ok());
}

TEST_F(CheckpointTest, APromotionWhoseWriterIsGoneResumesElsewhereFromTheStoresCopy) {
  StatusOr<std::unique_ptr<CheckpointStore>> store =
      CheckpointStore::Open((dir_ / "store").string(), 1 << 20);
  ASSERT_TRUE(store.ok());
  JobRecord job;
  job.id = 1;
  MemoryJournal journal;
  JobEngine engine(job, PromotionSpec(), &journal, store->get());
  engine.SetWorkerOnline("w1", true);
  engine.SetWorkerOnline("w2", true);
  StatusOr<std::optional<Assignment>> best = engine.NextAssignment("w1", 0);
  ASSERT_TRUE(best.ok() && best->has_value());
  RunRung(engine, **best, 0.8);
  for (int i = 0; i < 2; ++i) {
    StatusOr<std::optional<Assignment>> a = engine.NextAssignment("w2", 0);
    ASSERT_TRUE(a.ok() && a->has_value());
    RunRung(engine, **a, 0.2);
  }
  // w1 is gone and the store has no copy: w2 cannot resume its trial.
  ASSERT_TRUE(engine.OnWorkerLost("w1", 0).ok());
  EXPECT_EQ(engine.CheckpointHolders().count("w1"), 1u);
  StatusOr<std::optional<Assignment>> other = engine.NextAssignment("w2", 0);
  ASSERT_TRUE(other.ok() && other->has_value());
  EXPECT_NE((*other)->trial.id, (*best)->trial.id);

  // w1 had uploaded it: w2 resumes it at epoch 1, sent the store's copy first.
  const std::string stem = (*best)->checkpoint;
  std::ofstream((*store)->PathOf(stem, 1)) << "weights";
  EXPECT_EQ(engine.CheckpointHolders().count("w1"), 0u);
  RunRung(engine, **other, 0.1);
  EXPECT_EQ(engine.state(), JobState::kRunning);
  StatusOr<std::optional<Assignment>> resumed = engine.NextAssignment("w2", 0);
  ASSERT_TRUE(resumed.ok() && resumed->has_value());
  EXPECT_EQ((*resumed)->trial.id, (*best)->trial.id);
  EXPECT_EQ((*resumed)->start_epoch, 1);
  EXPECT_EQ((*resumed)->checkpoint_source, (*store)->PathOf(stem, 1));
  // While it runs from epoch 1, only checkpoints from epoch 1 on are kept for it.
  EXPECT_EQ(engine.CheckpointsToKeep().at(stem), 1);
  RunRung(engine, **resumed, 0.95);
  EXPECT_EQ(engine.state(), JobState::kCompleted);
  EXPECT_TRUE(engine.CheckpointsToKeep().empty());
}

}  // namespace
}  // namespace topotune
