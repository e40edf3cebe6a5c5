#pragma once

// The image classifiers a worker trains, built by name. Only trainer.cc and models.cc
// include this header (it includes torch/torch.h).
//
// The layouts below are exact, so that a PyTorch mirror (bench/) builds the same network
// with the same parameter count. Notation: conv KxK(in, out, stride s, pad p, bias b);
// BN = BatchNorm2d(eps 1e-5, momentum 0.1); "small input" means height <= 64 and
// width <= 64 (CIFAR, MNIST), anything larger is "large input" (ImageNet-style, 224).
//
// lenet        LeNet-5, see LeNetImpl below. PyTorch's default initialisation.
//
// resnet8      He et al. 2016 CIFAR ResNet, 6n+2 layers with n = 1 (resnet8), n = 3
// resnet20     (resnet20), for every input size:
//                conv3x3(in, 16, stride 1, pad 1, bias false)-BN-ReLU;
//                layer1 = n BasicBlocks(16, stride 1), layer2 = n BasicBlocks(32, the
//                first with stride 2), layer3 = n BasicBlocks(64, the first with
//                stride 2); adaptive avgpool to 1x1; flatten; fc(64, classes).
//              BasicBlock(planes, stride s) from `inplanes` channels =
//                conv3x3(inplanes, planes, stride s, pad 1, bias false)-BN-ReLU-
//                conv3x3(planes, planes, stride 1, pad 1, bias false)-BN,
//                plus the shortcut: identity, or when s != 1 or inplanes != planes the
//                projection conv1x1(inplanes, planes, stride s, pad 0, bias false)-BN
//                (option B); ReLU after the addition.
//              resnet20 at 10 classes: 272,474 parameters; resnet8: 78,042.
//
// resnet18     torchvision's ResNet-18 and ResNet-50 (v1.5: the stride sits in the 3x3
// resnet50     conv of a Bottleneck).
//              Stem, small input (the common CIFAR stem: a 7x7/2 conv plus max-pool would
//                shrink 32x32 to 8x8 before the first stage):
//                conv3x3(in, 64, stride 1, pad 1, bias false)-BN-ReLU, no max-pool.
//              Stem, large input (torchvision's):
//                conv7x7(in, 64, stride 2, pad 3, bias false)-BN-ReLU-
//                maxpool(kernel 3, stride 2, pad 1).
//              Then layer1..layer4 with planes 64, 128, 256, 512, the first block of
//              layer2..layer4 with stride 2; adaptive avgpool to 1x1; flatten;
//              fc(512 * expansion, classes).
//              resnet18: BasicBlock (above, expansion 1), blocks [2, 2, 2, 2];
//                fc(512, classes). 11,173,962 parameters (CIFAR stem, 10 classes).
//              resnet50: Bottleneck (expansion 4), blocks [3, 4, 6, 3]; fc(2048, classes).
//                Bottleneck(planes, stride s) from `inplanes` channels =
//                conv1x1(inplanes, planes, bias false)-BN-ReLU-
//                conv3x3(planes, planes, stride s, pad 1, bias false)-BN-ReLU-
//                conv1x1(planes, 4 * planes, bias false)-BN, plus the shortcut: identity,
//                or when s != 1 or inplanes != 4 * planes conv1x1(inplanes, 4 * planes,
//                stride s, bias false)-BN; ReLU after the addition.
//                25,557,032 parameters (ImageNet stem, 1000 classes).
//
// mobilenetv2  Sandler et al. 2018 as torchvision builds it, width 1.0:
//                conv3x3(in, 32, stride S, pad 1, bias false)-BN-ReLU6;
//                inverted residual stages (t, c, n, s) = (1,16,1,1), (6,24,2,S),
//                (6,32,3,2), (6,64,4,2), (6,96,3,1), (6,160,3,2), (6,320,1,1) (the first
//                block of a stage has stride s, the others 1);
//                conv1x1(320, 1280, bias false)-BN-ReLU6; adaptive avgpool to 1x1;
//                flatten; dropout(0.2); fc(1280, classes).
//              S = 2 for large input; S = 1 for small input (the usual CIFAR adaptation:
//                total stride 8 instead of 32, so 32x32 ends at 4x4).
//              InvertedResidual(inp, oup, stride s, expand t), hidden = inp * t =
//                [when t != 1: conv1x1(inp, hidden, bias false)-BN-ReLU6]
//                conv3x3(hidden, hidden, stride s, pad 1, groups hidden, bias false)-BN-
//                ReLU6-conv1x1(hidden, oup, bias false)-BN; plus x when s == 1 and
//                inp == oup (no activation after the addition).
//              2,236,682 parameters at 10 classes.
//
// vgg11        VGG configuration A with batch norm (torchvision's vgg11_bn features):
//                64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M where a number c is
//                conv3x3(prev, c, stride 1, pad 1, bias true)-BN-ReLU and M is
//                maxpool(kernel 2, stride 2). An M is skipped when the feature map is
//                already 1 pixel high or wide, so 28x28 (MNIST) works: 28-14-7-3-1-1.
//              Small input (CIFAR VGG): adaptive avgpool to 1x1 (the identity at 32x32);
//                flatten; fc(512, classes).
//              Large input (torchvision): adaptive avgpool to 7x7; flatten;
//                fc(25088, 4096)-ReLU-dropout(0.5)-fc(4096, 4096)-ReLU-dropout(0.5)-
//                fc(4096, classes).
//              9,231,114 parameters (small input, 10 classes).
//
// Initialisation of every model but lenet, as torchvision: conv weights Kaiming normal
// (fan_out, ReLU gain), conv biases 0; BN weight 1, bias 0; fc layers of mobilenetv2 and
// vgg11 normal(0, 0.01) with bias 0, fc layers of the ResNets PyTorch's default.

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "tuner/status.h"

namespace topotune {

// The shape of what a model sees: images [N, channels, height, width] and num_classes.
struct ModelInput {
  int channels = 3;
  int height = 32;
  int width = 32;
  int num_classes = 10;
};

// A network from images [N, C, H, W] (normalised floats) to class logits
// [N, num_classes]. The trainer holds every model through this type.
class ImageClassifierImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor images) = 0;
};

// LeNet-5: conv5x5(in, 6, pad P)-ReLU-maxpool(2)-conv5x5(6, 16)-ReLU-maxpool(2)-flatten-
// fc(F, 120)-ReLU-fc(120, 84)-ReLU-fc(84, classes), convs and fcs with bias. P = 2 when
// the input is smaller than 32x32 (MNIST's 28x28, as in the original LeNet-5), else 0;
// F = 16 * h * w for the map after the second pool, 16 * 5 * 5 = 400 for 3x32x32 and
// 1x28x28 (62,006 parameters for 3x32x32 and 10 classes).
class LeNetImpl : public ImageClassifierImpl {
 public:
  explicit LeNetImpl(const ModelInput& input = {});
  torch::Tensor forward(torch::Tensor images) override;

 private:
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::Conv2d conv2_{nullptr};
  torch::nn::Linear fc1_{nullptr};
  torch::nn::Linear fc2_{nullptr};
  torch::nn::Linear fc3_{nullptr};
};
TORCH_MODULE(LeNet);

// The names MakeModel accepts, in a stable order: lenet, resnet8, resnet20, resnet18,
// resnet50, mobilenetv2, vgg11 (as tuner/types.h KnownModels()).
const std::vector<std::string>& ModelNames();

// Leaves every parameter of `model` without a gradient (PyTorch 2's default
// zero_grad(set_to_none=True)): the next backward writes the gradients instead of adding
// them to zeroed ones, which saves a fill and an add per parameter and gives the same
// values. Optimizers skip parameters without a gradient.
void DropGradients(torch::nn::Module& model);

// The smallest height and width MakeModel accepts.
constexpr int kMinModelImageSize = 28;

// A freshly initialised model (from torch's global generator) for `input`, on the CPU;
// InvalidArgument naming the known models for an unknown name, or saying why the model
// cannot take that input (channels >= 1, height and width >= kMinModelImageSize,
// num_classes >= 2). Does not throw.
StatusOr<std::shared_ptr<ImageClassifierImpl>> MakeModel(const std::string& name,
                                                         const ModelInput& input);

// The input a model takes for a dataset: its images' shape and number of classes, read
// from one image of its test split. Errors: the dataset's reader's.
StatusOr<ModelInput> InputOfDataset(const std::string& format, const std::string& dir);

}  // namespace topotune
