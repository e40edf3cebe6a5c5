#include "workers/models.h"

#include <exception>
#include <functional>
#include <utility>

#include "workers/dataset.h"

namespace topotune {

namespace {

namespace nn = torch::nn;

// Inputs at most this high and wide get the CIFAR variants (see models.h).
constexpr int kMaxSmallImageSize = 64;

bool IsSmallInput(const ModelInput& input) {
  return input.height <= kMaxSmallImageSize && input.width <= kMaxSmallImageSize;
}

nn::Conv2d Conv(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
                int64_t padding, int64_t groups = 1, bool bias = false) {
  return nn::Conv2d(nn::Conv2dOptions(in_channels, out_channels, kernel_size)
                        .stride(stride)
                        .padding(padding)
                        .groups(groups)
                        .bias(bias));
}

nn::BatchNorm2d BatchNorm(int64_t channels) { return nn::BatchNorm2d(channels); }

// torchvision's initialisation: Kaiming normal (fan_out, ReLU) convs with zero biases,
// BN weight 1 and bias 0; fc layers normal(0, 0.01) with bias 0 when `small_linear`, else
// left at PyTorch's default.
void InitWeights(nn::Module& model, bool small_linear) {
  torch::NoGradGuard no_grad;
  for (const std::shared_ptr<nn::Module>& module : model.modules(/*include_self=*/false)) {
    if (auto* conv = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(conv->weight, /*a=*/0, torch::kFanOut, torch::kReLU);
      if (conv->bias.defined()) nn::init::zeros_(conv->bias);
    } else if (auto* bn = module->as<nn::BatchNorm2d>()) {
      nn::init::ones_(bn->weight);
      nn::init::zeros_(bn->bias);
    } else if (auto* linear = module->as<nn::Linear>()) {
      if (!small_linear) continue;
      nn::init::normal_(linear->weight, /*mean=*/0.0, /*std=*/0.01);
      nn::init::zeros_(linear->bias);
    }
  }
}

// ---- ResNets ----

// The block of ResNet-8/20/18: two 3x3 convs and a shortcut (see models.h).
class BasicBlockImpl : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 1;

  BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride)
      : conv1_(register_module("conv1", Conv(inplanes, planes, /*kernel_size=*/3, stride,
                                             /*padding=*/1))),
        bn1_(register_module("bn1", BatchNorm(planes))),
        conv2_(register_module("conv2", Conv(planes, planes, /*kernel_size=*/3, /*stride=*/1,
                                             /*padding=*/1))),
        bn2_(register_module("bn2", BatchNorm(planes))) {
    if (stride != 1 || inplanes != planes) {
      downsample_ = register_module(
          "downsample",
          nn::Sequential(Conv(inplanes, planes, /*kernel_size=*/1, stride, /*padding=*/0),
                         BatchNorm(planes)));
    }
  }

  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor out = torch::relu(bn1_(conv1_(x)));
    out = bn2_(conv2_(out));
    return torch::relu(out + (downsample_ ? downsample_->forward(x) : x));
  }

 private:
  nn::Conv2d conv1_;
  nn::BatchNorm2d bn1_;
  nn::Conv2d conv2_;
  nn::BatchNorm2d bn2_;
  nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(BasicBlock);

// The block of ResNet-50: 1x1 reduce, 3x3 (carrying the stride), 1x1 expand (see models.h).
class BottleneckImpl : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;

  BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride)
      : conv1_(register_module("conv1", Conv(inplanes, planes, /*kernel_size=*/1, /*stride=*/1,
                                             /*padding=*/0))),
        bn1_(register_module("bn1", BatchNorm(planes))),
        conv2_(register_module("conv2", Conv(planes, planes, /*kernel_size=*/3, stride,
                                             /*padding=*/1))),
        bn2_(register_module("bn2", BatchNorm(planes))),
        conv3_(register_module("conv3", Conv(planes, planes * kExpansion, /*kernel_size=*/1,
                                             /*stride=*/1, /*padding=*/0))),
        bn3_(register_module("bn3", BatchNorm(planes * kExpansion))) {
    if (stride != 1 || inplanes != planes * kExpansion) {
      downsample_ = register_module(
          "downsample", nn::Sequential(Conv(inplanes, planes * kExpansion, /*kernel_size=*/1,
                                            stride, /*padding=*/0),
                                       BatchNorm(planes * kExpansion)));
    }
  }

  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor out = torch::relu(bn1_(conv1_(x)));
    out = torch::relu(bn2_(conv2_(out)));
    out = bn3_(conv3_(out));
    return torch::relu(out + (downsample_ ? downsample_->forward(x) : x));
  }

 private:
  nn::Conv2d conv1_;
  nn::BatchNorm2d bn1_;
  nn::Conv2d conv2_;
  nn::BatchNorm2d bn2_;
  nn::Conv2d conv3_;
  nn::BatchNorm2d bn3_;
  nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(Bottleneck);

enum class ResNetBlock { kBasic, kBottleneck };

// What distinguishes the ResNets of the zoo.
struct ResNetSpec {
  ResNetBlock block = ResNetBlock::kBasic;
  std::vector<int64_t> planes;  ///< per stage; the first stage has stride 1, the others 2
  std::vector<int> blocks;      ///< per stage
  int64_t stem_width = 64;      ///< output channels of the first conv
  bool imagenet_stem = false;   ///< 7x7/2 conv plus 3x3/2 max-pool, else a 3x3/1 conv
};

class ResNetImpl : public ImageClassifierImpl {
 public:
  ResNetImpl(const ResNetSpec& spec, const ModelInput& input)
      : imagenet_stem_(spec.imagenet_stem),
        conv1_(register_module(
            "conv1", spec.imagenet_stem ? Conv(input.channels, spec.stem_width, /*kernel_size=*/7,
                                               /*stride=*/2, /*padding=*/3)
                                        : Conv(input.channels, spec.stem_width, /*kernel_size=*/3,
                                               /*stride=*/1, /*padding=*/1))),
        bn1_(register_module("bn1", BatchNorm(spec.stem_width))) {
    const int64_t expansion =
        spec.block == ResNetBlock::kBasic ? BasicBlockImpl::kExpansion : BottleneckImpl::kExpansion;
    int64_t inplanes = spec.stem_width;
    for (size_t stage = 0; stage < spec.planes.size(); ++stage) {
      nn::Sequential layer;
      for (int i = 0; i < spec.blocks[stage]; ++i) {
        const int64_t stride = (stage > 0 && i == 0) ? 2 : 1;
        if (spec.block == ResNetBlock::kBasic) {
          layer->push_back(BasicBlock(inplanes, spec.planes[stage], stride));
        } else {
          layer->push_back(Bottleneck(inplanes, spec.planes[stage], stride));
        }
        inplanes = spec.planes[stage] * expansion;
      }
      layers_.push_back(register_module("layer" + std::to_string(stage + 1), layer));
    }
    fc_ = register_module("fc", nn::Linear(/*in_features=*/inplanes,
                                           /*out_features=*/input.num_classes));
    InitWeights(*this, /*small_linear=*/false);
  }

  torch::Tensor forward(torch::Tensor images) override {
    torch::Tensor x = torch::relu(bn1_(conv1_(images)));
    if (imagenet_stem_) {
      x = torch::max_pool2d(x, /*kernel_size=*/3, /*stride=*/2, /*padding=*/1);
    }
    for (nn::Sequential& layer : layers_) x = layer->forward(x);
    x = torch::adaptive_avg_pool2d(x, /*output_size=*/{1, 1}).flatten(/*start_dim=*/1);
    return fc_(x);
  }

 private:
  bool imagenet_stem_;
  nn::Conv2d conv1_;
  nn::BatchNorm2d bn1_;
  std::vector<nn::Sequential> layers_;
  nn::Linear fc_{nullptr};
};

std::shared_ptr<ImageClassifierImpl> MakeCifarResNet(int blocks_per_stage,
                                                     const ModelInput& input) {
  ResNetSpec spec;
  spec.block = ResNetBlock::kBasic;
  spec.planes = {16, 32, 64};
  spec.blocks = {blocks_per_stage, blocks_per_stage, blocks_per_stage};
  spec.stem_width = 16;
  spec.imagenet_stem = false;
  return std::make_shared<ResNetImpl>(spec, input);
}

std::shared_ptr<ImageClassifierImpl> MakeTorchvisionResNet(ResNetBlock block,
                                                           std::vector<int> blocks,
                                                           const ModelInput& input) {
  ResNetSpec spec;
  spec.block = block;
  spec.planes = {64, 128, 256, 512};
  spec.blocks = std::move(blocks);
  spec.stem_width = 64;
  spec.imagenet_stem = !IsSmallInput(input);
  return std::make_shared<ResNetImpl>(spec, input);
}

// ---- MobileNetV2 ----

// Conv-BN-ReLU6, padding (kernel_size - 1) / 2. A module rather than a Sequential so that
// Sequentials can hold it.
class ConvBnRelu6Impl : public nn::Module {
 public:
  ConvBnRelu6Impl(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
                  int64_t groups = 1)
      : conv_(register_module("conv", Conv(in_channels, out_channels, kernel_size, stride,
                                           /*padding=*/(kernel_size - 1) / 2, groups))),
        bn_(register_module("bn", BatchNorm(out_channels))) {}

  torch::Tensor forward(torch::Tensor x) { return torch::relu6(bn_(conv_(x))); }

 private:
  nn::Conv2d conv_;
  nn::BatchNorm2d bn_;
};
TORCH_MODULE(ConvBnRelu6);

class InvertedResidualImpl : public nn::Module {
 public:
  InvertedResidualImpl(int64_t inp, int64_t oup, int64_t stride, int64_t expand_ratio)
      : use_residual_(stride == 1 && inp == oup) {
    const int64_t hidden = inp * expand_ratio;
    nn::Sequential conv;
    if (expand_ratio != 1)
      conv->push_back(ConvBnRelu6(inp, hidden, /*kernel_size=*/1, /*stride=*/1));
    conv->push_back(ConvBnRelu6(hidden, hidden, /*kernel_size=*/3, stride, /*groups=*/hidden));
    conv->push_back(Conv(hidden, oup, /*kernel_size=*/1, /*stride=*/1, /*padding=*/0));
    conv->push_back(BatchNorm(oup));
    conv_ = register_module("conv", conv);
  }

  torch::Tensor forward(torch::Tensor x) {
    return use_residual_ ? x + conv_->forward(x) : conv_->forward(x);
  }

 private:
  bool use_residual_;
  nn::Sequential conv_{nullptr};
};
TORCH_MODULE(InvertedResidual);

class MobileNetV2Impl : public ImageClassifierImpl {
 public:
  explicit MobileNetV2Impl(const ModelInput& input) {
    struct Stage {
      int64_t expand_ratio, channels, blocks, stride;
    };
    // Small inputs keep full resolution in the first conv and the 24-channel stage.
    const int64_t early_stride = IsSmallInput(input) ? 1 : 2;
    const Stage stages[] = {{1, 16, 1, 1}, {6, 24, 2, early_stride}, {6, 32, 3, 2}, {6, 64, 4, 2},
                            {6, 96, 3, 1}, {6, 160, 3, 2},           {6, 320, 1, 1}};
    constexpr int64_t kFirstChannels = 32;
    constexpr int64_t kLastChannels = 1280;

    nn::Sequential features;
    features->push_back(
        ConvBnRelu6(input.channels, kFirstChannels, /*kernel_size=*/3, early_stride));
    int64_t channels = kFirstChannels;
    for (const Stage& stage : stages) {
      for (int64_t i = 0; i < stage.blocks; ++i) {
        features->push_back(InvertedResidual(channels, stage.channels, i == 0 ? stage.stride : 1,
                                             stage.expand_ratio));
        channels = stage.channels;
      }
    }
    features->push_back(ConvBnRelu6(channels, kLastChannels, /*kernel_size=*/1, /*stride=*/1));
    features_ = register_module("features", features);
    classifier_ = register_module(
        "classifier",
        nn::Sequential(nn::Dropout(/*p=*/0.2), nn::Linear(/*in_features=*/kLastChannels,
                                                          /*out_features=*/input.num_classes)));
    InitWeights(*this, /*small_linear=*/true);
  }

  torch::Tensor forward(torch::Tensor images) override {
    torch::Tensor x = features_->forward(images);
    x = torch::adaptive_avg_pool2d(x, /*output_size=*/{1, 1}).flatten(/*start_dim=*/1);
    return classifier_->forward(x);
  }

 private:
  nn::Sequential features_{nullptr};
  nn::Sequential classifier_{nullptr};
};

// ---- VGG ----

class Vgg11Impl : public ImageClassifierImpl {
 public:
  explicit Vgg11Impl(const ModelInput& input) : small_input_(IsSmallInput(input)) {
    constexpr int kPool = 0;  // "M" in the configuration
    const int config[] = {64, kPool, 128, kPool, 256, 256, kPool, 512, 512, kPool, 512, 512, kPool};
    int64_t channels = input.channels;
    for (int entry : config) {
      if (entry == kPool) {
        pool_after_.back() = true;
        continue;
      }
      conv_blocks_.push_back(register_module(
          "conv" + std::to_string(conv_blocks_.size() + 1),
          nn::Sequential(Conv(channels, entry, /*kernel_size=*/3, /*stride=*/1, /*padding=*/1,
                              /*groups=*/1, /*bias=*/true),
                         BatchNorm(entry), nn::ReLU())));
      pool_after_.push_back(false);
      channels = entry;
    }
    if (small_input_) {
      classifier_ = register_module("classifier",
                                    nn::Sequential(nn::Linear(/*in_features=*/channels,
                                                              /*out_features=*/input.num_classes)));
    } else {
      classifier_ = register_module(
          "classifier",
          nn::Sequential(nn::Linear(/*in_features=*/channels * 7 * 7, /*out_features=*/4096),
                         nn::ReLU(), nn::Dropout(/*p=*/0.5),
                         nn::Linear(/*in_features=*/4096, /*out_features=*/4096), nn::ReLU(),
                         nn::Dropout(/*p=*/0.5),
                         nn::Linear(/*in_features=*/4096, /*out_features=*/input.num_classes)));
    }
    InitWeights(*this, /*small_linear=*/true);
  }

  torch::Tensor forward(torch::Tensor images) override {
    torch::Tensor x = images;
    for (size_t i = 0; i < conv_blocks_.size(); ++i) {
      x = conv_blocks_[i]->forward(x);
      // A map 1 pixel high or wide cannot be pooled again (28x28 inputs reach 1x1 early).
      if (pool_after_[i] && x.size(2) > 1 && x.size(3) > 1) {
        x = torch::max_pool2d(x, /*kernel_size=*/2, /*stride=*/2);
      }
    }
    const int64_t pooled = small_input_ ? 1 : 7;
    x = torch::adaptive_avg_pool2d(x, /*output_size=*/{pooled, pooled}).flatten(/*start_dim=*/1);
    return classifier_->forward(x);
  }

 private:
  bool small_input_;
  std::vector<nn::Sequential> conv_blocks_;  ///< conv-BN-ReLU each
  std::vector<bool> pool_after_;             ///< max-pool after conv_blocks_[i]
  nn::Sequential classifier_{nullptr};
};

// ---- Registry ----

using ModelFactory = std::function<std::shared_ptr<ImageClassifierImpl>(const ModelInput&)>;

// Name and constructor of every model, in the order of ModelNames().
const std::vector<std::pair<std::string, ModelFactory>>& ModelRegistry() {
  static const std::vector<std::pair<std::string, ModelFactory>> kRegistry = {
      {"lenet", [](const ModelInput& input) { return LeNet(input).ptr(); }},
      {"resnet8",
       [](const ModelInput& input) { return MakeCifarResNet(/*blocks_per_stage=*/1, input); }},
      {"resnet20",
       [](const ModelInput& input) { return MakeCifarResNet(/*blocks_per_stage=*/3, input); }},
      {"resnet18",
       [](const ModelInput& input) {
         return MakeTorchvisionResNet(ResNetBlock::kBasic, {2, 2, 2, 2}, input);
       }},
      {"resnet50",
       [](const ModelInput& input) {
         return MakeTorchvisionResNet(ResNetBlock::kBottleneck, {3, 4, 6, 3}, input);
       }},
      {"mobilenetv2",
       [](const ModelInput& input) { return std::make_shared<MobileNetV2Impl>(input); }},
      {"vgg11", [](const ModelInput& input) { return std::make_shared<Vgg11Impl>(input); }},
  };
  return kRegistry;
}

Status CheckInput(const std::string& name, const ModelInput& input) {
  const std::string where = "model '" + name + "': ";
  if (input.channels < 1) {
    return Status::InvalidArgument(where + "channels is " + std::to_string(input.channels) +
                                   ", expected >= 1");
  }
  if (input.height < kMinModelImageSize || input.width < kMinModelImageSize) {
    return Status::InvalidArgument(where + "images are " + std::to_string(input.height) + "x" +
                                   std::to_string(input.width) + ", expected at least " +
                                   std::to_string(kMinModelImageSize) + "x" +
                                   std::to_string(kMinModelImageSize));
  }
  if (input.num_classes < 2) {
    return Status::InvalidArgument(where + "num_classes is " + std::to_string(input.num_classes) +
                                   ", expected >= 2");
  }
  return Status::OK();
}

}  // namespace

LeNetImpl::LeNetImpl(const ModelInput& input) {
  const int64_t padding = (input.height < 32 || input.width < 32) ? 2 : 0;
  // 5x5 conv, 2x2 pool, 5x5 conv, 2x2 pool.
  auto after_features = [padding](int64_t size) { return ((size + 2 * padding - 4) / 2 - 4) / 2; };
  const int64_t flat = 16 * after_features(input.height) * after_features(input.width);
  conv1_ = register_module(
      "conv1", nn::Conv2d(nn::Conv2dOptions(/*in_channels=*/input.channels, /*out_channels=*/6,
                                            /*kernel_size=*/5)
                              .padding(padding)));
  conv2_ =
      register_module("conv2", nn::Conv2d(nn::Conv2dOptions(
                                   /*in_channels=*/6, /*out_channels=*/16, /*kernel_size=*/5)));
  fc1_ = register_module("fc1", nn::Linear(/*in_features=*/flat, /*out_features=*/120));
  fc2_ = register_module("fc2", nn::Linear(/*in_features=*/120, /*out_features=*/84));
  fc3_ = register_module("fc3", nn::Linear(/*in_features=*/84, /*out_features=*/input.num_classes));
}

torch::Tensor LeNetImpl::forward(torch::Tensor images) {
  torch::Tensor x = torch::max_pool2d(torch::relu(conv1_(images)), /*kernel_size=*/2);
  x = torch::max_pool2d(torch::relu(conv2_(x)), /*kernel_size=*/2);
  x = x.flatten(/*start_dim=*/1);
  x = torch::relu(fc1_(x));
  x = torch::relu(fc2_(x));
  return fc3_(x);
}

const std::vector<std::string>& ModelNames() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> names;
    for (const auto& entry : ModelRegistry()) names.push_back(entry.first);
    return names;
  }();
  return kNames;
}

void DropGradients(nn::Module& model) {
  for (torch::Tensor& parameter : model.parameters()) parameter.mutable_grad().reset();
}

StatusOr<std::shared_ptr<ImageClassifierImpl>> MakeModel(const std::string& name,
                                                         const ModelInput& input) {
  for (const auto& entry : ModelRegistry()) {
    if (entry.first != name) continue;
    TOPOTUNE_RETURN_IF_ERROR(CheckInput(name, input));
    try {
      return entry.second(input);
    } catch (const std::exception& e) {
      return Status::Internal("model '" + name + "': construction failed: " + e.what());
    }
  }
  std::string known;
  for (const std::string& model : ModelNames()) known += (known.empty() ? "" : ", ") + model;
  return Status::InvalidArgument("unknown model '" + name + "'; known: " + known);
}

StatusOr<ModelInput> InputOfDataset(const std::string& format, const std::string& dir) {
  StatusOr<ImageSet> sample = ReadImageSet(format, dir, "test", 1);
  if (!sample.ok()) return sample.status();
  ModelInput input;
  input.channels = sample->channels;
  input.height = sample->height;
  input.width = sample->width;
  input.num_classes = sample->num_classes;
  return input;
}

}  // namespace topotune
