#include "workers/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
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
constexpr uint32_t kIdxImagesMagic = 0x00000803;  // unsigned bytes, 3 dimensions
constexpr uint32_t kIdxLabelsMagic = 0x00000801;  // unsigned bytes, 1 dimension
constexpr uint32_t kIdxMaxSide = 1 << 14;         // far above any real image side
constexpr unsigned kGzChunkBytes = 1 << 20;

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

// A file read through zlib: gzipped or plain alike. Closes on destruction.
class GzReader {
 public:
  explicit GzReader(const fs::path& path) : path_(path), file_(gzopen(path.c_str(), "rb")) {}
  ~GzReader() {
    if (file_ != nullptr) gzclose(file_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  Status Open() const {
    if (file_ == nullptr) return Status::IOError("cannot open " + path_.string());
    return Status::OK();
  }

  // Appends exactly `bytes` bytes to `out`, or says how many the file lacked (`what` names
  // the part being read).
  Status Read(uint64_t bytes, const std::string& what, std::vector<uint8_t>* out) {
    // Grows with what arrives, so a corrupt header cannot ask for a huge buffer up front.
    uint64_t done = 0;
    while (done < bytes) {
      const unsigned chunk = static_cast<unsigned>(std::min<uint64_t>(kGzChunkBytes, bytes - done));
      const size_t offset = out->size();
      out->resize(offset + chunk);
      const int got = gzread(file_, out->data() + offset, chunk);
      if (got < 0) {
        int code = 0;
        const char* message = gzerror(file_, &code);
        out->resize(offset);
        return Status::IOError(path_.string() + ": cannot read " + what + ": " +
                               (message != nullptr ? message : "zlib error"));
      }
      out->resize(offset + static_cast<size_t>(got));
      done += static_cast<uint64_t>(got);
      if (got < static_cast<int>(chunk)) break;
    }
    if (done < bytes) {
      return Status::InvalidArgument(path_.string() + ": truncated: expected " +
                                     std::to_string(bytes) + " bytes of " + what + ", found " +
                                     std::to_string(done));
    }
    return Status::OK();
  }

  // Reads `count` big-endian 32-bit words of the IDX header.
  Status ReadHeader(int count, std::vector<uint32_t>* words) {
    std::vector<uint8_t> bytes;
    TOPOTUNE_RETURN_IF_ERROR(Read(4u * static_cast<uint64_t>(count), "IDX header", &bytes));
    words->clear();
    for (int i = 0; i < count; ++i) {
      const uint8_t* b = bytes.data() + 4 * i;
      words->push_back((uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) |
                       uint32_t{b[3]});
    }
    return Status::OK();
  }

 private:
  fs::path path_;
  gzFile file_;
};

std::string Hex(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof(text), "0x%08x", value);
  return text;
}

// `name` in `dir` if it exists, else `name`.gz, else nothing; `tried` collects the names
// that were not there.
std::optional<fs::path> FindIdxFile(const fs::path& dir, const std::string& name,
                                    std::vector<std::string>* tried) {
  std::error_code ec;
  for (const std::string& candidate : {name, name + ".gz"}) {
    const fs::path path = dir / candidate;
    if (fs::is_regular_file(path, ec)) return path;
    tried->push_back(candidate);
  }
  return std::nullopt;
}

void AppendBigEndian(uint32_t value, std::vector<uint8_t>* out) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<uint8_t>(value >> shift));
}

// Writes header + body to `path` through zlib, compressed or not ("T": transparent).
Status WriteGzFile(const fs::path& path, bool gzip, const std::vector<uint8_t>& header,
                   const uint8_t* body, size_t body_bytes) {
  gzFile file = gzopen(path.c_str(), gzip ? "wb" : "wbT");
  if (file == nullptr) return Status::IOError("cannot create " + path.string());
  bool ok = gzwrite(file, header.data(), static_cast<unsigned>(header.size())) ==
            static_cast<int>(header.size());
  for (size_t done = 0; ok && done < body_bytes;) {
    const unsigned chunk =
        static_cast<unsigned>(std::min<size_t>(kGzChunkBytes, body_bytes - done));
    ok = gzwrite(file, body + done, chunk) == static_cast<int>(chunk);
    done += chunk;
  }
  ok = (gzclose(file) == Z_OK) && ok;
  if (!ok) return Status::IOError("cannot write " + path.string());
  return Status::OK();
}

// File names of the MNIST pair of `split`: images first, then labels.
std::pair<std::string, std::string> MnistFileNames(const std::string& split) {
  const std::string prefix = split == "train" ? "train" : "t10k";
  return {prefix + "-images-idx3-ubyte", prefix + "-labels-idx1-ubyte"};
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

// The checks every reader makes before it opens a file.
Status CheckReadArguments(const std::string& dir, const std::string& split, int64_t max_samples) {
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
  return Status::OK();
}

}  // namespace

StatusOr<ImageSet> ReadCifar10(const std::string& dir, const std::string& split,
                               int64_t max_samples) {
  TOPOTUNE_RETURN_IF_ERROR(CheckReadArguments(dir, split, max_samples));
  std::error_code ec;
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

StatusOr<ImageSet> ReadMnist(const std::string& dir, const std::string& split,
                             int64_t max_samples) {
  TOPOTUNE_RETURN_IF_ERROR(CheckReadArguments(dir, split, max_samples));
  const auto [images_name, labels_name] = MnistFileNames(split);
  std::vector<std::string> tried;
  const std::optional<fs::path> images_path = FindIdxFile(dir, images_name, &tried);
  const std::optional<fs::path> labels_path = FindIdxFile(dir, labels_name, &tried);
  if (!images_path || !labels_path) {
    std::string names;
    for (const std::string& name : tried) names += (names.empty() ? "" : ", ") + name;
    return Status::InvalidArgument("MNIST " + split + " split incomplete in " + dir +
                                   ": no file named " + names);
  }

  GzReader images(*images_path);
  TOPOTUNE_RETURN_IF_ERROR(images.Open());
  std::vector<uint32_t> image_header;
  TOPOTUNE_RETURN_IF_ERROR(images.ReadHeader(4, &image_header));
  if (image_header[0] != kIdxImagesMagic) {
    return Status::InvalidArgument(images_path->string() + ": magic number " +
                                   Hex(image_header[0]) + ", expected " + Hex(kIdxImagesMagic) +
                                   " (IDX images of unsigned bytes)");
  }
  const uint32_t rows = image_header[2], cols = image_header[3];
  if (rows == 0 || cols == 0 || rows > kIdxMaxSide || cols > kIdxMaxSide) {
    return Status::InvalidArgument(images_path->string() + ": images of " + std::to_string(rows) +
                                   "x" + std::to_string(cols) + " pixels, expected 1.." +
                                   std::to_string(kIdxMaxSide) + " each way");
  }

  GzReader labels(*labels_path);
  TOPOTUNE_RETURN_IF_ERROR(labels.Open());
  std::vector<uint32_t> label_header;
  TOPOTUNE_RETURN_IF_ERROR(labels.ReadHeader(2, &label_header));
  if (label_header[0] != kIdxLabelsMagic) {
    return Status::InvalidArgument(labels_path->string() + ": magic number " +
                                   Hex(label_header[0]) + ", expected " + Hex(kIdxLabelsMagic) +
                                   " (IDX labels of unsigned bytes)");
  }
  if (label_header[1] != image_header[1]) {
    return Status::InvalidArgument(
        labels_path->string() + " holds " + std::to_string(label_header[1]) + " labels but " +
        images_path->string() + " holds " + std::to_string(image_header[1]) + " images");
  }

  int64_t count = image_header[1];
  if (max_samples > 0) count = std::min(count, max_samples);
  if (count == 0) {
    return Status::InvalidArgument("the " + split + " split in " + dir + " has no records");
  }
  ImageSet set;
  set.count = count;
  set.channels = 1;
  set.height = static_cast<int>(rows);
  set.width = static_cast<int>(cols);
  set.num_classes = kNumClasses;
  TOPOTUNE_RETURN_IF_ERROR(
      images.Read(static_cast<uint64_t>(count) * rows * cols, "pixels", &set.pixels));
  TOPOTUNE_RETURN_IF_ERROR(labels.Read(static_cast<uint64_t>(count), "labels", &set.labels));
  for (int64_t i = 0; i < count; ++i) {
    if (set.labels[i] >= kNumClasses) {
      return Status::InvalidArgument(labels_path->string() + ": record " + std::to_string(i) +
                                     " has label " + std::to_string(set.labels[i]) +
                                     ", expected 0.." + std::to_string(kNumClasses - 1));
    }
  }
  return set;
}

StatusOr<ImageSet> ReadImageSet(const std::string& format, const std::string& dir,
                                const std::string& split, int64_t max_samples) {
  if (format == "cifar10-bin") return ReadCifar10(dir, split, max_samples);
  if (format == "mnist-idx") return ReadMnist(dir, split, max_samples);
  return Status::InvalidArgument("dataset format is '" + format +
                                 "', expected one of: cifar10-bin, mnist-idx");
}

Status WriteMnistIdx(const std::string& dir, const std::string& split, const ImageSet& images,
                     bool gzip) {
  if (split != "train" && split != "test") {
    return Status::InvalidArgument("split is '" + split + "', expected 'train' or 'test'");
  }
  if (images.channels != 1) {
    return Status::InvalidArgument("MNIST IDX holds one-channel images, these have " +
                                   std::to_string(images.channels) + " channels");
  }
  if (images.count < 0 || images.height < 1 || images.width < 1 ||
      images.count > std::numeric_limits<uint32_t>::max()) {
    return Status::InvalidArgument("image set of " + std::to_string(images.count) + " images of " +
                                   std::to_string(images.height) + "x" +
                                   std::to_string(images.width) + " cannot be written as IDX");
  }
  const uint64_t image_bytes = static_cast<uint64_t>(images.height) * images.width;
  if (images.pixels.size() != static_cast<uint64_t>(images.count) * image_bytes ||
      images.labels.size() != static_cast<uint64_t>(images.count)) {
    return Status::InvalidArgument("image set of " + std::to_string(images.count) + " images has " +
                                   std::to_string(images.pixels.size()) + " pixel bytes and " +
                                   std::to_string(images.labels.size()) + " labels, expected " +
                                   std::to_string(images.count * image_bytes) + " and " +
                                   std::to_string(images.count));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create " + dir + ": " + ec.message());

  const auto [images_name, labels_name] = MnistFileNames(split);
  const std::string suffix = gzip ? ".gz" : "";
  const std::string stale_suffix = gzip ? "" : ".gz";
  // The reader prefers the plain name: a stale other variant would shadow or confuse.
  for (const std::string& name : {images_name, labels_name}) {
    const fs::path stale = fs::path(dir) / (name + stale_suffix);
    fs::remove(stale, ec);
    if (ec) return Status::IOError("cannot remove " + stale.string() + ": " + ec.message());
  }

  std::vector<uint8_t> header;
  AppendBigEndian(kIdxImagesMagic, &header);
  AppendBigEndian(static_cast<uint32_t>(images.count), &header);
  AppendBigEndian(static_cast<uint32_t>(images.height), &header);
  AppendBigEndian(static_cast<uint32_t>(images.width), &header);
  TOPOTUNE_RETURN_IF_ERROR(WriteGzFile(fs::path(dir) / (images_name + suffix), gzip, header,
                                       images.pixels.data(), images.pixels.size()));
  header.clear();
  AppendBigEndian(kIdxLabelsMagic, &header);
  AppendBigEndian(static_cast<uint32_t>(images.count), &header);
  return WriteGzFile(fs::path(dir) / (labels_name + suffix), gzip, header, images.labels.data(),
                     images.labels.size());
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

ImageSet GreyCentreCrop(const ImageSet& rgb) {
  ImageSet grey;
  grey.count = rgb.count;
  grey.channels = 1;
  grey.height = kMnistImageSide;
  grey.width = kMnistImageSide;
  grey.num_classes = rgb.num_classes;
  grey.labels = rgb.labels;
  grey.pixels.reserve(static_cast<size_t>(rgb.count) * kMnistImageSide * kMnistImageSide);
  const int top = (rgb.height - kMnistImageSide) / 2, left = (rgb.width - kMnistImageSide) / 2;
  const size_t plane = static_cast<size_t>(rgb.height) * rgb.width;
  for (int64_t i = 0; i < rgb.count; ++i) {
    const uint8_t* image = rgb.pixels.data() + static_cast<size_t>(i) * rgb.channels * plane;
    const uint8_t* best = image;
    double best_variance = -1.0;
    for (int c = 0; c < rgb.channels; ++c) {
      double sum = 0.0, sum_squares = 0.0;
      for (size_t at = 0; at < plane; ++at) {
        const double value = image[c * plane + at];
        sum += value;
        sum_squares += value * value;
      }
      const double mean = sum / static_cast<double>(plane);
      const double variance = sum_squares / static_cast<double>(plane) - mean * mean;
      if (variance > best_variance) {
        best_variance = variance;
        best = image + c * plane;
      }
    }
    for (int y = top; y < top + kMnistImageSide; ++y) {
      const uint8_t* row = best + static_cast<size_t>(y) * rgb.width + left;
      grey.pixels.insert(grey.pixels.end(), row, row + kMnistImageSide);
    }
  }
  return grey;
}

}  // namespace topotune
