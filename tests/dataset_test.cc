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

// A one-channel set of `count` images of `height` x `width` with varied pixels and labels.
ImageSet GreySet(int64_t count, int height, int width) {
  ImageSet set;
  set.count = count;
  set.channels = 1;
  set.height = height;
  set.width = width;
  for (int64_t i = 0; i < count; ++i) {
    set.labels.push_back(static_cast<uint8_t>((i * 7) % 10));
    for (int p = 0; p < height * width; ++p) {
      set.pixels.push_back(static_cast<uint8_t>((i * 31 + p * 13) % 256));
    }
  }
  return set;
}

void ExpectSameImages(const ImageSet& read, const ImageSet& written) {
  EXPECT_EQ(read.count, written.count);
  EXPECT_EQ(read.channels, 1);
  EXPECT_EQ(read.height, written.height);
  EXPECT_EQ(read.width, written.width);
  EXPECT_EQ(read.num_classes, 10);
  EXPECT_EQ(read.labels, written.labels);
  EXPECT_EQ(read.pixels, written.pixels);
}

TEST(Mnist, PlainRoundTrip) {
  TempDir dir;
  const ImageSet train = GreySet(60, 28, 28), test = GreySet(20, 28, 28);
  ASSERT_TRUE(WriteMnistIdx(dir.path(), "train", train, /*gzip=*/false).ok());
  ASSERT_TRUE(WriteMnistIdx(dir.path(), "test", test, /*gzip=*/false).ok());
  EXPECT_EQ(fs::file_size(dir.File("train-images-idx3-ubyte")), 16u + 60 * 28 * 28);
  EXPECT_EQ(fs::file_size(dir.File("train-labels-idx1-ubyte")), 8u + 60);
  const std::vector<char> header = ReadBytes(dir.File("t10k-images-idx3-ubyte"));
  ASSERT_GE(header.size(), 16u);
  EXPECT_EQ(std::vector<char>(header.begin(), header.begin() + 8),
            (std::vector<char>{0, 0, 8, 3, 0, 0, 0, 20}));

  StatusOr<ImageSet> read = ReadMnist(dir.path(), "train");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ExpectSameImages(*read, train);
  read = ReadMnist(dir.path(), "test");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ExpectSameImages(*read, test);
}

TEST(Mnist, GzipRoundTripAndMaxSamples) {
  TempDir dir;
  const ImageSet train = GreySet(300, 28, 28);
  ASSERT_TRUE(WriteMnistIdx(dir.path(), "train", train, /*gzip=*/true).ok());
  EXPECT_FALSE(fs::exists(dir.File("train-images-idx3-ubyte")));
  ASSERT_TRUE(fs::exists(dir.File("train-images-idx3-ubyte.gz")));
  ASSERT_TRUE(fs::exists(dir.File("train-labels-idx1-ubyte.gz")));
  const std::vector<char> gz = ReadBytes(dir.File("train-images-idx3-ubyte.gz"));
  ASSERT_GE(gz.size(), 2u);
  EXPECT_EQ(static_cast<uint8_t>(gz[0]), 0x1f);  // the gzip magic
  EXPECT_EQ(static_cast<uint8_t>(gz[1]), 0x8b);
  EXPECT_LT(gz.size(), 300u * 28 * 28);

  StatusOr<ImageSet> read = ReadMnist(dir.path(), "train");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ExpectSameImages(*read, train);

  StatusOr<ImageSet> some = ReadMnist(dir.path(), "train", 25);
  ASSERT_TRUE(some.ok()) << some.status().ToString();
  EXPECT_EQ(some->count, 25);
  EXPECT_EQ(some->labels, std::vector<uint8_t>(train.labels.begin(), train.labels.begin() + 25));
  EXPECT_EQ(some->pixels,
            std::vector<uint8_t>(train.pixels.begin(), train.pixels.begin() + 25 * 28 * 28));

  // Writing plain afterwards replaces the gzipped pair rather than leaving both.
  const ImageSet other = GreySet(10, 28, 28);
  ASSERT_TRUE(WriteMnistIdx(dir.path(), "train", other, /*gzip=*/false).ok());
  EXPECT_FALSE(fs::exists(dir.File("train-images-idx3-ubyte.gz")));
  read = ReadMnist(dir.path(), "train");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ExpectSameImages(*read, other);
}

TEST(Mnist, OddImageSizesRoundTrip) {
  TempDir dir;
  const ImageSet set = GreySet(7, 5, 9);
  ASSERT_TRUE(WriteMnistIdx(dir.path(), "test", set, /*gzip=*/true).ok());
  StatusOr<ImageSet> read = ReadMnist(dir.path(), "test");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ExpectSameImages(*read, set);
}

TEST(Mnist, WriterRejectsColourAndInconsistentSets) {
  TempDir dir;
  ImageSet colour = GreySet(4, 28, 28);
  colour.channels = 3;
  Status status = WriteMnistIdx(dir.path(), "train", colour, false);
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(status.message().find("3 channels"), std::string::npos) << status.ToString();
  ImageSet short_labels = GreySet(4, 28, 28);
  short_labels.labels.pop_back();
  EXPECT_EQ(WriteMnistIdx(dir.path(), "train", short_labels, false).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(WriteMnistIdx(dir.path(), "validation", GreySet(4, 28, 28), false).code(),
            Status::Code::kInvalidArgument);
}

TEST(Mnist, MissingFilesAreNamed) {
  TempDir dir;
  StatusOr<ImageSet> set = ReadMnist(dir.path(), "test");
  ASSERT_FALSE(set.ok());
  const std::string& message = set.status().message();
  for (const char* name : {"t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz",
                           "t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz"}) {
    EXPECT_NE(message.find(name), std::string::npos) << name << " in " << message;
  }
  // Images alone: only the labels are missing.
  ASSERT_TRUE(WriteMnistIdx(dir.path(), "train", GreySet(3, 28, 28), false).ok());
  fs::remove(dir.File("train-labels-idx1-ubyte"));
  set = ReadMnist(dir.path(), "train");
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find("train-labels-idx1-ubyte.gz"), std::string::npos)
      << set.status().ToString();
  EXPECT_EQ(set.status().message().find("train-images"), std::string::npos)
      << set.status().ToString();
  EXPECT_FALSE(ReadMnist(dir.File("nowhere"), "train").ok());
}

TEST(Mnist, BadMagicIsAnErrorNamingTheFile) {
  TempDir dir;
  ASSERT_TRUE(WriteMnistIdx(dir.path(), "train", GreySet(5, 28, 28), false).ok());
  // An images file where the labels file should be.
  fs::copy_file(dir.File("train-images-idx3-ubyte"), dir.File("train-labels-idx1-ubyte"),
                fs::copy_options::overwrite_existing);
  StatusOr<ImageSet> set = ReadMnist(dir.path(), "train");
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(set.status().message().find("train-labels-idx1-ubyte"), std::string::npos)
      << set.status().ToString();
  EXPECT_NE(set.status().message().find("0x00000803"), std::string::npos)
      << set.status().ToString();

  std::vector<char> bytes = ReadBytes(dir.File("train-images-idx3-ubyte"));
  bytes[3] = 0x01;
  WriteBytes(dir.File("train-images-idx3-ubyte"), bytes);
  set = ReadMnist(dir.path(), "train");
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find("train-images-idx3-ubyte: magic number 0x00000801"),
            std::string::npos)
      << set.status().ToString();
}

TEST(Mnist, CountMismatchIsAnErrorNamingBothFiles) {
  TempDir dir;
  ASSERT_TRUE(WriteMnistIdx(dir.path(), "train", GreySet(5, 28, 28), true).ok());
  TempDir other;
  ASSERT_TRUE(WriteMnistIdx(other.path(), "train", GreySet(6, 28, 28), true).ok());
  fs::copy_file(other.File("train-labels-idx1-ubyte.gz"), dir.File("train-labels-idx1-ubyte.gz"),
                fs::copy_options::overwrite_existing);
  StatusOr<ImageSet> set = ReadMnist(dir.path(), "train");
  ASSERT_FALSE(set.ok());
  const std::string& message = set.status().message();
  EXPECT_NE(message.find("train-labels-idx1-ubyte.gz holds 6 labels"), std::string::npos)
      << message;
  EXPECT_NE(message.find("train-images-idx3-ubyte.gz holds 5 images"), std::string::npos)
      << message;
}

TEST(Mnist, TruncatedFilesAreErrorsNamingTheFile) {
  for (const bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "gzip" : "plain");
    TempDir dir;
    ASSERT_TRUE(WriteMnistIdx(dir.path(), "test", GreySet(50, 28, 28), gzip).ok());
    const std::string images =
        dir.File(std::string("t10k-images-idx3-ubyte") + (gzip ? ".gz" : ""));
    std::vector<char> bytes = ReadBytes(images);
    bytes.resize(bytes.size() * 2 / 3);
    WriteBytes(images, bytes);
    StatusOr<ImageSet> set = ReadMnist(dir.path(), "test");
    ASSERT_FALSE(set.ok());
    EXPECT_NE(set.status().message().find(images), std::string::npos) << set.status().ToString();
    // Fewer samples than the cut: the first images are whole and read fine.
    if (!gzip) {
      StatusOr<ImageSet> some = ReadMnist(dir.path(), "test", 10);
      EXPECT_TRUE(some.ok()) << some.status().ToString();
    }

    // A labels file cut inside its header.
    const std::string labels =
        dir.File(std::string("t10k-labels-idx1-ubyte") + (gzip ? ".gz" : ""));
    WriteBytes(labels, {0, 0, 8});
    set = ReadMnist(dir.path(), "test");
    ASSERT_FALSE(set.ok());
    EXPECT_NE(set.status().message().find(labels), std::string::npos) << set.status().ToString();
  }
}

TEST(Mnist, BadLabelIsAnErrorNamingTheFile) {
  TempDir dir;
  ASSERT_TRUE(WriteMnistIdx(dir.path(), "train", GreySet(5, 28, 28), false).ok());
  std::vector<char> bytes = ReadBytes(dir.File("train-labels-idx1-ubyte"));
  bytes[8 + 3] = 12;
  WriteBytes(dir.File("train-labels-idx1-ubyte"), bytes);
  StatusOr<ImageSet> set = ReadMnist(dir.path(), "train");
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find("train-labels-idx1-ubyte"), std::string::npos);
  EXPECT_NE(set.status().message().find("label 12"), std::string::npos) << set.status().ToString();
}

TEST(Mnist, PrefersThePlainFileOverTheGzippedOne) {
  TempDir dir, other;
  const ImageSet plain = GreySet(4, 28, 28), gzipped = GreySet(9, 28, 28);
  ASSERT_TRUE(WriteMnistIdx(dir.path(), "train", plain, false).ok());
  ASSERT_TRUE(WriteMnistIdx(other.path(), "train", gzipped, true).ok());
  for (const char* name : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"}) {
    fs::copy_file(other.File(name), dir.File(name));
  }
  StatusOr<ImageSet> read = ReadMnist(dir.path(), "train");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ExpectSameImages(*read, plain);
}

TEST(ImageSetFormat, DispatchesByFormatName) {
  TempDir dir;
  ASSERT_TRUE(WriteShapesDataset(dir.path(), SmallOptions(2)).ok());
  ASSERT_TRUE(WriteMnistIdx(dir.path(), "train", GreySet(12, 28, 28), true).ok());
  StatusOr<ImageSet> cifar = ReadImageSet("cifar10-bin", dir.path(), "train");
  ASSERT_TRUE(cifar.ok()) << cifar.status().ToString();
  EXPECT_EQ(cifar->count, 200);
  EXPECT_EQ(cifar->channels, 3);
  StatusOr<ImageSet> mnist = ReadImageSet("mnist-idx", dir.path(), "train", 5);
  ASSERT_TRUE(mnist.ok()) << mnist.status().ToString();
  EXPECT_EQ(mnist->count, 5);
  EXPECT_EQ(mnist->channels, 1);
  EXPECT_EQ(mnist->height, 28);

  StatusOr<ImageSet> unknown = ReadImageSet("imagenet-jpeg", dir.path(), "train");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("imagenet-jpeg"), std::string::npos);
  EXPECT_NE(unknown.status().message().find("cifar10-bin, mnist-idx"), std::string::npos)
      << unknown.status().ToString();
}

}  // namespace
}  // namespace topotune
