#include "workers/dataset.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

namespace topotune {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kRecordBytes = 3073;

// A fresh, empty folder named after the running test, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    static int created = 0;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ =
        fs::temp_directory_path() / ("topotune_dataset_" + std::string(info->name()) + "_" +
                                     std::to_string(::getpid()) + "_" + std::to_string(created++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string path() const { return path_.string(); }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

ShapesOptions SmallOptions(uint64_t seed) {
  ShapesOptions options;
  options.train_samples = 200;
  options.test_samples = 50;
  options.seed = seed;
  return options;
}

std::vector<char> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void WriteBytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(Dataset, GeneratedShapesRoundTripThroughReader) {
  TempDir dir;
  ASSERT_TRUE(WriteShapesDataset(dir.path(), SmallOptions(7)).ok());
  EXPECT_EQ(fs::file_size(dir.File("data_batch_1.bin")), 200u * kRecordBytes);
  EXPECT_EQ(fs::file_size(dir.File("test_batch.bin")), 50u * kRecordBytes);

  StatusOr<ImageSet> train = ReadCifar10(dir.path(), "train");
  ASSERT_TRUE(train.ok()) << train.status().ToString();
  EXPECT_EQ(train->count, 200);
  EXPECT_EQ(train->pixels.size(), 200u * 3 * 32 * 32);
  ASSERT_EQ(train->labels.size(), 200u);
  std::set<int> classes(train->labels.begin(), train->labels.end());
  EXPECT_EQ(classes.size(), 10u);
  for (uint8_t label : train->labels) EXPECT_LT(label, 10);

  StatusOr<ImageSet> test = ReadCifar10(dir.path(), "test");
  ASSERT_TRUE(test.ok()) << test.status().ToString();
  EXPECT_EQ(test->count, 50);
  EXPECT_EQ(std::set<int>(test->labels.begin(), test->labels.end()).size(), 10u);
  EXPECT_NE(train->pixels, std::vector<uint8_t>(train->pixels.size(), train->pixels[0]));
}

TEST(Dataset, WritesClassNames) {
  TempDir dir;
  ASSERT_TRUE(WriteShapesDataset(dir.path(), SmallOptions(1)).ok());
  std::ifstream meta(dir.File("batches.meta.txt"));
  std::vector<std::string> names;
  for (std::string line; std::getline(meta, line);) names.push_back(line);
  ASSERT_EQ(names.size(), 10u);
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), 10u);
  EXPECT_EQ(names[0], "disc");
}

TEST(Dataset, SameSeedSameBytesOtherSeedOtherBytes) {
  TempDir a, b, c;
  ASSERT_TRUE(WriteShapesDataset(a.path(), SmallOptions(42)).ok());
  ASSERT_TRUE(WriteShapesDataset(b.path(), SmallOptions(42)).ok());
  ASSERT_TRUE(WriteShapesDataset(c.path(), SmallOptions(43)).ok());
  EXPECT_EQ(ReadBytes(a.File("data_batch_1.bin")), ReadBytes(b.File("data_batch_1.bin")));
  EXPECT_EQ(ReadBytes(a.File("test_batch.bin")), ReadBytes(b.File("test_batch.bin")));
  EXPECT_NE(ReadBytes(a.File("data_batch_1.bin")), ReadBytes(c.File("data_batch_1.bin")));
  // The test split is not a copy of the start of the training split.
  std::vector<char> train = ReadBytes(a.File("data_batch_1.bin"));
  std::vector<char> test = ReadBytes(a.File("test_batch.bin"));
  EXPECT_FALSE(std::equal(test.begin(), test.end(), train.begin()));
}

TEST(Dataset, MaxSamplesKeepsTheFirstImages) {
  TempDir dir;
  ASSERT_TRUE(WriteShapesDataset(dir.path(), SmallOptions(3)).ok());
  StatusOr<ImageSet> all = ReadCifar10(dir.path(), "train");
  StatusOr<ImageSet> some = ReadCifar10(dir.path(), "train", 30);
  ASSERT_TRUE(all.ok() && some.ok());
  EXPECT_EQ(some->count, 30);
  EXPECT_EQ(some->labels, std::vector<uint8_t>(all->labels.begin(), all->labels.begin() + 30));
  EXPECT_EQ(some->pixels,
            std::vector<uint8_t>(all->pixels.begin(), all->pixels.begin() + 30 * 3072));
  // More than there are: all of them.
  StatusOr<ImageSet> more = ReadCifar10(dir.path(), "test", 1000);
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(more->count, 50);
}

TEST(Dataset, TrainSplitReadsEveryBatchFileThatExists) {
  TempDir dir;
  ASSERT_TRUE(WriteShapesDataset(dir.path(), SmallOptions(5)).ok());
  // data_batch_3.bin alone after data_batch_1.bin: a gap is fine.
  fs::copy_file(dir.File("test_batch.bin"), dir.File("data_batch_3.bin"));
  StatusOr<ImageSet> train = ReadCifar10(dir.path(), "train");
  ASSERT_TRUE(train.ok()) << train.status().ToString();
  EXPECT_EQ(train->count, 250);
  StatusOr<ImageSet> capped = ReadCifar10(dir.path(), "train", 220);
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ(capped->count, 220);
}

TEST(Dataset, RegeneratingRemovesStaleBatches) {
  TempDir dir;
  ASSERT_TRUE(WriteShapesDataset(dir.path(), SmallOptions(5)).ok());
  fs::copy_file(dir.File("test_batch.bin"), dir.File("data_batch_2.bin"));
  ASSERT_TRUE(WriteShapesDataset(dir.path(), SmallOptions(5)).ok());
  EXPECT_FALSE(fs::exists(dir.File("data_batch_2.bin")));
}

TEST(Dataset, MissingFolderIsAnErrorNamingIt) {
  TempDir dir;
  const std::string missing = dir.File("nowhere");
  StatusOr<ImageSet> set = ReadCifar10(missing, "train");
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find(missing), std::string::npos) << set.status().ToString();
}

TEST(Dataset, FolderWithoutBatchesIsAnError) {
  TempDir dir;
  StatusOr<ImageSet> train = ReadCifar10(dir.path(), "train");
  ASSERT_FALSE(train.ok());
  EXPECT_NE(train.status().message().find(dir.path()), std::string::npos);
  StatusOr<ImageSet> test = ReadCifar10(dir.path(), "test");
  ASSERT_FALSE(test.ok());
  EXPECT_NE(test.status().message().find("test_batch.bin"), std::string::npos);
}

TEST(Dataset, TruncatedFileIsAnErrorNamingIt) {
  TempDir dir;
  ASSERT_TRUE(WriteShapesDataset(dir.path(), SmallOptions(9)).ok());
  std::vector<char> bytes = ReadBytes(dir.File("test_batch.bin"));
  bytes.resize(bytes.size() - 100);
  WriteBytes(dir.File("test_batch.bin"), bytes);
  StatusOr<ImageSet> set = ReadCifar10(dir.path(), "test");
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(set.status().message().find("test_batch.bin"), std::string::npos)
      << set.status().ToString();
}

TEST(Dataset, BadLabelIsAnErrorNamingTheFile) {
  TempDir dir;
  ASSERT_TRUE(WriteShapesDataset(dir.path(), SmallOptions(9)).ok());
  std::vector<char> bytes = ReadBytes(dir.File("data_batch_1.bin"));
  bytes[2 * kRecordBytes] = 10;  // the label of the third record
  WriteBytes(dir.File("data_batch_1.bin"), bytes);
  StatusOr<ImageSet> set = ReadCifar10(dir.path(), "train");
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find("data_batch_1.bin"), std::string::npos);
  EXPECT_NE(set.status().message().find("label 10"), std::string::npos) << set.status().ToString();
}

TEST(Dataset, RejectsBadArguments) {
  TempDir dir;
  EXPECT_FALSE(ReadCifar10(dir.path(), "validation").ok());
  ShapesOptions options = SmallOptions(1);
  options.noise = 1.5;
  Status status = WriteShapesDataset(dir.path(), options);
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(status.message().find("noise"), std::string::npos);
  options = SmallOptions(1);
  options.train_samples = 0;
  EXPECT_FALSE(WriteShapesDataset(dir.path(), options).ok());
}

}  // namespace
}  // namespace topotune
