#pragma once

// The image classifiers a worker trains, built by name. Only trainer.cc and models.cc
// include this header (it includes torch/torch.h).

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "tuner/status.h"

namespace topotune {

// A network from images [N, 3, 32, 32] (normalised floats) to class logits
// [N, num_classes]. The trainer holds every model through this type.
class ImageClassifierImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor images) = 0;
};

// LeNet-5 for CIFAR-size input: conv(3,6,5)-relu-maxpool-conv(6,16,5)-relu-maxpool, then
// fully connected 400-120-84-num_classes.
class LeNetImpl : public ImageClassifierImpl {
 public:
  explicit LeNetImpl(int num_classes = 10);
  torch::Tensor forward(torch::Tensor images) override;

 private:
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::Conv2d conv2_{nullptr};
  torch::nn::Linear fc1_{nullptr};
  torch::nn::Linear fc2_{nullptr};
  torch::nn::Linear fc3_{nullptr};
};
TORCH_MODULE(LeNet);

// The names MakeModel accepts, in a stable order.
const std::vector<std::string>& ModelNames();

// A freshly initialised model (from torch's global generator) for 10-class 32x32 RGB
// images, on the CPU; InvalidArgument naming the known models for an unknown name.
StatusOr<std::shared_ptr<ImageClassifierImpl>> MakeModel(const std::string& name);

}  // namespace topotune
