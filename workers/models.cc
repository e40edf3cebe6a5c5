#include "workers/models.h"

#include <functional>
#include <utility>

namespace topotune {

namespace {

using ModelFactory = std::function<std::shared_ptr<ImageClassifierImpl>()>;

constexpr int kNumClasses = 10;

// Name and constructor of every model; add ResNet, MobileNetV2, VGG here.
const std::vector<std::pair<std::string, ModelFactory>>& ModelRegistry() {
  static const std::vector<std::pair<std::string, ModelFactory>> kRegistry = {
      {"lenet", [] { return LeNet(kNumClasses).ptr(); }},
  };
  return kRegistry;
}

}  // namespace

LeNetImpl::LeNetImpl(int num_classes)
    : conv1_(
          register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(
                                       /*in_channels=*/3, /*out_channels=*/6, /*kernel_size=*/5)))),
      conv2_(register_module("conv2",
                             torch::nn::Conv2d(torch::nn::Conv2dOptions(
                                 /*in_channels=*/6, /*out_channels=*/16, /*kernel_size=*/5)))),
      fc1_(register_module("fc1", torch::nn::Linear(/*in_features=*/16 * 5 * 5,
                                                    /*out_features=*/120))),
      fc2_(register_module("fc2", torch::nn::Linear(/*in_features=*/120, /*out_features=*/84))),
      fc3_(register_module("fc3", torch::nn::Linear(/*in_features=*/84,
                                                    /*out_features=*/num_classes))) {}

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

StatusOr<std::shared_ptr<ImageClassifierImpl>> MakeModel(const std::string& name) {
  for (const auto& entry : ModelRegistry()) {
    if (entry.first == name) return entry.second();
  }
  std::string known;
  for (const std::string& model : ModelNames()) known += (known.empty() ? "" : ", ") + model;
  return Status::InvalidArgument("unknown model '" + name + "'; known: " + known);
}

}  // namespace topotune
