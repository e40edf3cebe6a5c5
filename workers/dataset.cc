#include "workers/dataset.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <system_error>
#include <utility>

namespace topotune {

namespace {

namespace fs = std::filesystem;

constexpr int kChannels = 3;
constexpr int kSide = 32;
constexpr int kNumClasses = 10;
constexpr int64_t kImageBytes = kChannels * kSide * kSide;  // 3072
constexpr int64_t kRecordBytes = 1 + kImageBytes;           // 3073
constexpr int kMaxTrainBatches = 5;
constexpr double kPi = 3.14159265358979323846;

// Appends the records of one CIFAR-10 batch file to `set`, up to `limit` images in all
// (0 = no limit).
Status AppendBatchFile(const fs::path& path, int64_t limit, ImageSet* set) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) return Status::IOError("cannot stat " + path.string() + ": " + ec.message());
  if (size % kRecordBytes != 0) {
    return Status::InvalidArgument(path.string() + ": size " + std::to_string(size) +
                                   " is not a whole number of " + std::to_string(kRecordBytes) +
                                   "-byte CIFAR-10 records");
  }
  int64_t records = static_cast<int64_t>(size / kRecordBytes);
  if (limit > 0) records = std::min(records, limit - set->count);
  if (records <= 0) return Status::OK();

  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot open " + path.string());
  std::vector<uint8_t> buffer(static_cast<size_t>(records * kRecordBytes));
  in.read(reinterpret_cast<char*>(buffer.data()), static_cast<std::streamsize>(buffer.size()));
  if (in.gcount() != static_cast<std::streamsize>(buffer.size())) {
    return Status::IOError("short read from " + path.string());
  }

  const size_t pixel_offset = set->pixels.size();
  set->pixels.resize(pixel_offset + static_cast<size_t>(records * kImageBytes));
  set->labels.reserve(set->labels.size() + static_cast<size_t>(records));
  for (int64_t i = 0; i < records; ++i) {
    const uint8_t* record = buffer.data() + i * kRecordBytes;
    if (record[0] >= kNumClasses) {
      return Status::InvalidArgument(path.string() + ": record " + std::to_string(i) +
                                     " has label " + std::to_string(record[0]) + ", expected 0.." +
                                     std::to_string(kNumClasses - 1));
    }
    set->labels.push_back(record[0]);
    std::copy(record + 1, record + kRecordBytes,
              set->pixels.begin() + static_cast<std::ptrdiff_t>(pixel_offset + i * kImageBytes));
  }
  set->count += records;
  return Status::OK();
}

// A portable random source: mt19937_64 is specified bit for bit by the standard; the
// distributions below are ours, so a seed gives the same images on every standard library.
class ShapeRng {
 public:
  explicit ShapeRng(uint64_t seed) : engine_(seed) {}

  // Uniform in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  // Uniform integer in [0, n).
  int Below(int n) { return static_cast<int>(Uniform() * n); }
  bool Coin() { return (engine_() >> 63) != 0; }
  // Standard normal (Box-Muller).
  double Normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = 1.0 - Uniform();  // (0, 1]: log is finite
    const double u2 = Uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    spare_ = radius * std::sin(2.0 * kPi * u2);
    has_spare_ = true;
    return radius * std::cos(2.0 * kPi * u2);
  }

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

// SplitMix64: decorrelates the seeds of the train and test streams.
uint64_t MixSeed(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

enum ShapeClass {
  kDisc = 0,
  kSquare,
  kTriangle,
  kCross,
  kRing,
  kHorizontalStripes,
  kVerticalStripes,
  kCheckerboard,
  kDiagonalLine,
  kTwoDots,
};

constexpr std::array<const char*, kNumClasses> kClassNames = {"disc",
                                                              "square",
                                                              "triangle",
                                                              "cross",
                                                              "ring",
                                                              "horizontal_stripes",
                                                              "vertical_stripes",
                                                              "checkerboard",
                                                              "diagonal_line",
                                                              "two_dots"};

// Coverage in {0, 1} of pixel centre (x, y) by one randomly drawn instance of a class.
// Every parameter is drawn in the constructor, so one object is one image's shape.
class Shape {
 public:
  Shape(int label, ShapeRng* rng) : label_(label) {
    cx_ = rng->Uniform(10.0, 22.0);
    cy_ = rng->Uniform(10.0, 22.0);
    switch (label_) {
      case kDisc:
        size_ = rng->Uniform(4.0, 10.0);
        break;
      case kSquare:
      case kTriangle:
        size_ = rng->Uniform(4.0, 10.0);
        break;
      case kCross:
        size_ = rng->Uniform(6.0, 12.0);
        thickness_ = rng->Uniform(1.0, 2.5);
        break;
      case kRing:
        size_ = rng->Uniform(6.0, 12.0);
        thickness_ = rng->Uniform(1.5, 3.0);
        break;
      case kHorizontalStripes:
      case kVerticalStripes:
      case kCheckerboard:
        half_width_ = rng->Uniform(6.0, 14.0);
        half_height_ = rng->Uniform(6.0, 14.0);
        period_ = rng->Uniform(label_ == kCheckerboard ? 6.0 : 4.0, 9.0);
        phase_x_ = rng->Uniform(0.0, period_);
        phase_y_ = rng->Uniform(0.0, period_);
        break;
      case kDiagonalLine: {
        const double degrees = rng->Uniform(25.0, 65.0) + (rng->Coin() ? 90.0 : 0.0);
        angle_ = degrees * kPi / 180.0;
        size_ = rng->Uniform(8.0, 15.0);
        thickness_ = rng->Uniform(1.0, 2.0);
        break;
      }
      case kTwoDots: {
        size_ = rng->Uniform(2.0, 3.5);
        const double separation = rng->Uniform(8.0, 16.0);
        angle_ = rng->Uniform(0.0, 2.0 * kPi);
        dx_ = 0.5 * separation * std::cos(angle_);
        dy_ = 0.5 * separation * std::sin(angle_);
        break;
      }
    }
  }

  bool Covers(double x, double y) const {
    const double dx = x - cx_;
    const double dy = y - cy_;
    switch (label_) {
      case kDisc:
        return dx * dx + dy * dy <= size_ * size_;
      case kSquare:
        return std::abs(dx) <= size_ && std::abs(dy) <= size_;
      case kTriangle: {  // apex up, base 2 * size wide
        if (dy < -size_ || dy > size_) return false;
        return std::abs(dx) <= 0.5 * (dy + size_);
      }
      case kCross:
        return (std::abs(dx) <= thickness_ && std::abs(dy) <= size_) ||
               (std::abs(dy) <= thickness_ && std::abs(dx) <= size_);
      case kRing: {
        const double r = std::sqrt(dx * dx + dy * dy);
        return r <= size_ && r >= size_ - thickness_;
      }
      case kHorizontalStripes:
      case kVerticalStripes:
      case kCheckerboard: {
        if (std::abs(dx) > half_width_ || std::abs(dy) > half_height_) return false;
        const bool band_x = std::fmod(x + phase_x_, period_) < 0.5 * period_;
        const bool band_y = std::fmod(y + phase_y_, period_) < 0.5 * period_;
        if (label_ == kHorizontalStripes) return band_y;
        if (label_ == kVerticalStripes) return band_x;
        return band_x != band_y;
      }
      case kDiagonalLine: {
        const double along = dx * std::cos(angle_) + dy * std::sin(angle_);
        const double across = -dx * std::sin(angle_) + dy * std::cos(angle_);
        return std::abs(along) <= size_ && std::abs(across) <= thickness_;
      }
      case kTwoDots: {
        const double ax = dx - dx_, ay = dy - dy_, bx = dx + dx_, by = dy + dy_;
        return ax * ax + ay * ay <= size_ * size_ || bx * bx + by * by <= size_ * size_;
      }
    }
    return false;
  }

 private:
  int label_;
  double cx_ = 0, cy_ = 0;
  double size_ = 0, thickness_ = 0, angle_ = 0, dx_ = 0, dy_ = 0;
  double half_width_ = 0, half_height_ = 0, period_ = 1, phase_x_ = 0, phase_y_ = 0;
};

// Draws one image of class `label` into `out` (kImageBytes, CHW).
void DrawImage(int label, double noise, ShapeRng* rng, uint8_t* out) {
  std::array<double, kChannels> background, foreground;
  for (double& c : background) c = rng->Uniform();
  // Redraw the foreground until it differs visibly from the background.
  for (int attempt = 0; attempt < 100; ++attempt) {
    double difference = 0.0;
    for (int c = 0; c < kChannels; ++c) {
      foreground[c] = rng->Uniform();
      difference += std::abs(foreground[c] - background[c]);
    }
    if (difference / kChannels >= 0.25) break;
  }
  const Shape shape(label, rng);
  for (int y = 0; y < kSide; ++y) {
    for (int x = 0; x < kSide; ++x) {
      const bool covered = shape.Covers(x + 0.5, y + 0.5);
      for (int c = 0; c < kChannels; ++c) {
        double value = covered ? foreground[c] : background[c];
        value += noise * rng->Normal();
        value = std::min(1.0, std::max(0.0, value));
        out[(c * kSide + y) * kSide + x] = static_cast<uint8_t>(std::lround(value * 255.0));
      }
    }
  }
}

// Writes `count` records with balanced, shuffled labels to `path`.
Status WriteShapesFile(const fs::path& path, int64_t count, double noise, uint64_t seed) {
  ShapeRng rng(seed);
  std::vector<uint8_t> labels(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) labels[i] = static_cast<uint8_t>(i % kNumClasses);
  for (int64_t i = count - 1; i > 0; --i) {  // Fisher-Yates with our own uniform
    const int64_t j = static_cast<int64_t>(rng.Uniform() * static_cast<double>(i + 1));
    std::swap(labels[i], labels[j]);
  }

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::IOError("cannot create " + path.string());
  std::vector<uint8_t> record(kRecordBytes);
  for (int64_t i = 0; i < count; ++i) {
    record[0] = labels[i];
    DrawImage(labels[i], noise, &rng, record.data() + 1);
    out.write(reinterpret_cast<const char*>(record.data()), kRecordBytes);
  }
  out.close();
  if (!out) return Status::IOError("cannot write " + path.string());
  return Status::OK();
}

}  // namespace

StatusOr<ImageSet> ReadCifar10(const std::string& dir, const std::string& split,
                               int64_t max_samples) {
  if (split != "train" && split != "test") {
    return Status::InvalidArgument("split is '" + split + "', expected 'train' or 'test'");
  }
  if (max_samples < 0) {
    return Status::InvalidArgument("max_samples is " + std::to_string(max_samples) +
                                   ", expected >= 0");
  }
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return Status::InvalidArgument("dataset folder " + dir + " does not exist");
  }

  std::vector<fs::path> files;
  if (split == "train") {
    for (int i = 1; i <= kMaxTrainBatches; ++i) {
      fs::path path = fs::path(dir) / ("data_batch_" + std::to_string(i) + ".bin");
      if (fs::exists(path, ec)) files.push_back(std::move(path));
    }
    if (files.empty()) {
      return Status::InvalidArgument("no data_batch_1.bin .. data_batch_5.bin in " + dir);
    }
  } else {
    fs::path path = fs::path(dir) / "test_batch.bin";
    if (!fs::exists(path, ec)) return Status::InvalidArgument(path.string() + " is missing");
    files.push_back(std::move(path));
  }

  ImageSet set;
  for (const fs::path& path : files) {
    if (max_samples > 0 && set.count >= max_samples) break;
    TOPOTUNE_RETURN_IF_ERROR(AppendBatchFile(path, max_samples, &set));
  }
  if (set.count == 0) {
    return Status::InvalidArgument("the " + split + " split in " + dir + " has no records");
  }
  return set;
}

Status WriteShapesDataset(const std::string& dir, const ShapesOptions& options) {
  if (options.train_samples < 1) {
    return Status::InvalidArgument("train_samples is " + std::to_string(options.train_samples) +
                                   ", expected >= 1");
  }
  if (options.test_samples < 1) {
    return Status::InvalidArgument("test_samples is " + std::to_string(options.test_samples) +
                                   ", expected >= 1");
  }
  if (!(options.noise >= 0.0 && options.noise <= 1.0)) {
    return Status::InvalidArgument("noise is " + std::to_string(options.noise) + ", expected 0..1");
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create " + dir + ": " + ec.message());

  const fs::path root(dir);
  // Batches 2..5 of an earlier dataset in the same folder would be read with the new one.
  for (int i = 2; i <= kMaxTrainBatches; ++i) {
    const fs::path stale = root / ("data_batch_" + std::to_string(i) + ".bin");
    fs::remove(stale, ec);
    if (ec) return Status::IOError("cannot remove " + stale.string() + ": " + ec.message());
  }
  TOPOTUNE_RETURN_IF_ERROR(WriteShapesFile(root / "data_batch_1.bin", options.train_samples,
                                           options.noise, MixSeed(2 * options.seed)));
  TOPOTUNE_RETURN_IF_ERROR(WriteShapesFile(root / "test_batch.bin", options.test_samples,
                                           options.noise, MixSeed(2 * options.seed + 1)));

  const fs::path meta = root / "batches.meta.txt";
  std::ofstream out(meta, std::ios::trunc);
  for (const char* name : kClassNames) out << name << '\n';
  out.close();
  if (!out) return Status::IOError("cannot write " + meta.string());
  return Status::OK();
}

}  // namespace topotune
