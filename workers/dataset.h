#pragma once

// Image datasets in CIFAR-10's binary format, without LibTorch: the reader the trainer
// uses, and the generator of the synthetic "shapes" dataset the project trains on when
// no real data is at hand. Nothing here downloads anything.

#include <cstdint>
#include <string>
#include <vector>

#include "tuner/status.h"

namespace topotune {

// Images as CIFAR-10 stores them: per image 3 planes (R, G, B) of height x width bytes.
struct ImageSet {
  int64_t count = 0;
  int channels = 3;
  int height = 32;
  int width = 32;
  int num_classes = 10;
  std::vector<uint8_t> pixels;  ///< count * channels * height * width, CHW per image
  std::vector<uint8_t> labels;  ///< count
};

// Reads data_batch_1.bin .. data_batch_5.bin (split "train", whichever exist, at least one)
// or test_batch.bin (split "test") from `dir`. max_samples > 0 keeps the first ones.
// A missing file, a size that is not a whole number of records, or a label >= 10 is an
// InvalidArgument/IOError naming the file.
StatusOr<ImageSet> ReadCifar10(const std::string& dir, const std::string& split,
                               int64_t max_samples = 0);

// Reads MNIST IDX files from `dir`: train-images-idx3-ubyte and train-labels-idx1-ubyte
// (split "train") or t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (split "test"),
// each either plain or gzipped with a ".gz" suffix. Images come back with channels = 1.
// Bad magic numbers, mismatched counts or truncated files are errors naming the file.
StatusOr<ImageSet> ReadMnist(const std::string& dir, const std::string& split,
                             int64_t max_samples = 0);

// ReadCifar10 or ReadMnist by format name ("cifar10-bin", "mnist-idx"); an unknown
// format is InvalidArgument naming the known ones.
StatusOr<ImageSet> ReadImageSet(const std::string& format, const std::string& dir,
                                const std::string& split, int64_t max_samples = 0);

// Writes a one-channel `images` as the MNIST IDX pair of `split` ("train" or "test") in
// `dir`, gzipped (".gz" names) when `gzip`. For tests and the generator: real MNIST files
// are read the same way.
Status WriteMnistIdx(const std::string& dir, const std::string& split, const ImageSet& images,
                     bool gzip);

// The side of MNIST-size images.
constexpr int kMnistImageSide = 28;

// The centre kMnistImageSide x kMnistImageSide crop of each image of a multi-channel set,
// in the channel where that image varies most: the generated shapes as one-channel,
// MNIST-size images (a luma mix can make a shape the grey of its background).
ImageSet GreyCentreCrop(const ImageSet& rgb);

// Options of the generated dataset: 10 classes of shapes and textures (disc, square,
// triangle, cross, ring, stripes, ...) at random position, size and colour, under noise.
struct ShapesOptions {
  int64_t train_samples = 5000;  ///< written to data_batch_1.bin
  int64_t test_samples = 1000;   ///< written to test_batch.bin
  double noise = 0.15;           ///< std of the pixel noise, 0..1; higher is harder
  uint64_t seed = 1;
};

// Writes the dataset into `dir` (created if missing) in CIFAR-10 binary format, plus a
// batches.meta.txt with the class names. Deterministic for a given seed.
Status WriteShapesDataset(const std::string& dir, const ShapesOptions& options);

}  // namespace topotune
