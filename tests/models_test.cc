#include "workers/models.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "tuner/types.h"
#include "workers/memory_stats.h"

namespace topotune {
namespace {

class ModelsEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { torch::set_num_threads(2); }
};
const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new ModelsEnvironment);

std::shared_ptr<ImageClassifierImpl> Make(const std::string& name, const ModelInput& input) {
  StatusOr<std::shared_ptr<ImageClassifierImpl>> made = MakeModel(name, input);
  EXPECT_TRUE(made.ok()) << name << ": " << made.status().ToString();
  return made.ok() ? *made : nullptr;
}

ModelInput Input(int channels, int size, int num_classes = 10) {
  ModelInput input;
  input.channels = channels;
  input.height = size;
  input.width = size;
  input.num_classes = num_classes;
  return input;
}

int64_t CountParameters(ImageClassifierImpl& model) {
  int64_t count = 0;
  for (const torch::Tensor& p : model.parameters()) count += p.numel();
  return count;
}

// One SGD step on a random batch: checks the logits' shape, a finite loss and that some
// weight moved.
void ExpectTrainingStepWorks(const std::string& name, const ModelInput& input, int64_t batch) {
  SCOPED_TRACE(name + " " + std::to_string(input.channels) + "x" + std::to_string(input.height) +
               "x" + std::to_string(input.width));
  std::shared_ptr<ImageClassifierImpl> model = Make(name, input);
  ASSERT_NE(model, nullptr);
  model->train();
  std::vector<torch::Tensor> before;
  for (const torch::Tensor& p : model->parameters()) before.push_back(p.detach().clone());

  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(/*lr=*/0.1));
  torch::Tensor images = torch::randn({batch, input.channels, input.height, input.width});
  torch::Tensor labels = torch::randint(/*low=*/0, /*high=*/input.num_classes, {batch},
                                        torch::TensorOptions().dtype(torch::kLong));
  torch::Tensor logits = model->forward(images);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{batch, input.num_classes}));
  torch::Tensor loss = torch::nn::functional::cross_entropy(logits, labels);
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
  optimizer.zero_grad();
  loss.backward();
  optimizer.step();

  std::vector<torch::Tensor> after = model->parameters();
  ASSERT_EQ(after.size(), before.size());
  bool changed = false;
  for (size_t i = 0; i < after.size() && !changed; ++i)
    changed = !torch::equal(after[i], before[i]);
  EXPECT_TRUE(changed);
}

// Batch 2 for the big models keeps the test fast; BN needs at least 2.
int64_t BatchFor(const std::string& name) {
  return (name == "resnet50" || name == "mobilenetv2" || name == "vgg11") ? 2 : 4;
}

TEST(Models, NamesAreTheTunersKnownModels) { EXPECT_EQ(ModelNames(), KnownModels()); }

TEST(Models, EveryModelTakesOneStepOnCifarShape) {
  torch::manual_seed(1);
  for (const std::string& name : ModelNames()) {
    ExpectTrainingStepWorks(name, Input(/*channels=*/3, /*size=*/32), BatchFor(name));
  }
}

TEST(Models, LeNetAndResNet8TrainOnMnistShape) {
  torch::manual_seed(2);
  ExpectTrainingStepWorks("lenet", Input(/*channels=*/1, /*size=*/28), /*batch=*/4);
  ExpectTrainingStepWorks("resnet8", Input(/*channels=*/1, /*size=*/28), /*batch=*/4);
}

TEST(Models, EveryModelRunsOnMnistShape) {
  torch::manual_seed(3);
  torch::NoGradGuard no_grad;
  for (const std::string& name : ModelNames()) {
    SCOPED_TRACE(name);
    std::shared_ptr<ImageClassifierImpl> model = Make(name, Input(/*channels=*/1, /*size=*/28));
    ASSERT_NE(model, nullptr);
    model->eval();
    torch::Tensor logits = model->forward(torch::randn({2, 1, 28, 28}));
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 10}));
    EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
  }
}

TEST(Models, ResNet18TakesImageNetSize) {
  torch::manual_seed(4);
  std::shared_ptr<ImageClassifierImpl> model = Make("resnet18", Input(/*channels=*/3, 224));
  ASSERT_NE(model, nullptr);
  // The ImageNet stem: a 7x7 first conv.
  EXPECT_EQ(model->named_parameters()["conv1.weight"].sizes(), (std::vector<int64_t>{64, 3, 7, 7}));
  model->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor logits = model->forward(torch::randn({2, 3, 224, 224}));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 10}));
  EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
}

TEST(Models, ParameterCountsMatchTheReferenceArchitectures) {
  std::shared_ptr<ImageClassifierImpl> lenet = Make("lenet", Input(3, 32));
  ASSERT_NE(lenet, nullptr);
  EXPECT_EQ(CountParameters(*lenet), 62006);

  std::shared_ptr<ImageClassifierImpl> resnet20 = Make("resnet20", Input(3, 32));
  ASSERT_NE(resnet20, nullptr);
  EXPECT_NEAR(CountParameters(*resnet20), 270000, 0.05 * 270000);
  EXPECT_EQ(CountParameters(*resnet20), 272474);

  std::shared_ptr<ImageClassifierImpl> resnet18 = Make("resnet18", Input(3, 32));
  ASSERT_NE(resnet18, nullptr);
  EXPECT_EQ(CountParameters(*resnet18), 11173962);

  // torchvision's resnet50 and mobilenet_v2 (ImageNet stem, 1000 classes).
  std::shared_ptr<ImageClassifierImpl> resnet50 = Make("resnet50", Input(3, 224, 1000));
  ASSERT_NE(resnet50, nullptr);
  EXPECT_EQ(CountParameters(*resnet50), 25557032);

  std::shared_ptr<ImageClassifierImpl> mobilenet = Make("mobilenetv2", Input(3, 224, 1000));
  ASSERT_NE(mobilenet, nullptr);
  EXPECT_EQ(CountParameters(*mobilenet), 3504872);
}

TEST(Models, NumClassesSetsTheLogitWidth) {
  torch::manual_seed(5);
  for (const char* name : {"lenet", "resnet8", "mobilenetv2", "vgg11"}) {
    SCOPED_TRACE(name);
    std::shared_ptr<ImageClassifierImpl> model = Make(name, Input(3, 32, /*num_classes=*/100));
    ASSERT_NE(model, nullptr);
    model->eval();
    torch::NoGradGuard no_grad;
    EXPECT_EQ(model->forward(torch::randn({2, 3, 32, 32})).sizes(), (std::vector<int64_t>{2, 100}));
  }
}

TEST(Models, UnknownNameListsTheKnownModels) {
  StatusOr<std::shared_ptr<ImageClassifierImpl>> made = MakeModel("alexnet", ModelInput{});
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(made.status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(made.status().message(),
            "unknown model 'alexnet'; known: lenet, resnet8, resnet20, resnet18, resnet50, "
            "mobilenetv2, vgg11");
}

TEST(Models, RejectsInputsTheyCannotTake) {
  struct Case {
    ModelInput input;
    std::string fragment;
  };
  const Case cases[] = {
      {Input(/*channels=*/0, /*size=*/32), "channels is 0"},
      {Input(/*channels=*/3, /*size=*/27), "images are 27x27, expected at least 28x28"},
      {Input(/*channels=*/3, /*size=*/32, /*num_classes=*/1), "num_classes is 1"},
  };
  for (const Case& c : cases) {
    StatusOr<std::shared_ptr<ImageClassifierImpl>> made = MakeModel("resnet8", c.input);
    ASSERT_FALSE(made.ok());
    EXPECT_EQ(made.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(made.status().message().find("model 'resnet8'"), std::string::npos);
    EXPECT_NE(made.status().message().find(c.fragment), std::string::npos)
        << made.status().message();
  }
}

TEST(Models, SeedDecidesTheInitialWeights) {
  torch::manual_seed(7);
  std::shared_ptr<ImageClassifierImpl> first = Make("resnet8", ModelInput{});
  torch::manual_seed(7);
  std::shared_ptr<ImageClassifierImpl> second = Make("resnet8", ModelInput{});
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  std::vector<torch::Tensor> a = first->parameters();
  std::vector<torch::Tensor> b = second->parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i]));
}

// 10 classes: class k is a 6x6 square of the k-th colour at the k-th of 10 places (2 rows
// of 5) on Gaussian noise. The colour makes the class visible to a network that pools
// globally, the place to one that looks at layout.
std::pair<torch::Tensor, torch::Tensor> SquaresDataset(int64_t count) {
  static const float kColours[10][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1},  {1, 1, 0},  {1, 0, 1},
                                        {0, 1, 1}, {1, 1, 1}, {1, -1, 0}, {0, 1, -1}, {-1, 0, 1}};
  constexpr double kNoise = 0.5;
  constexpr double kBrightness = 1.5;
  constexpr int64_t kSide = 6;
  torch::Tensor labels =
      torch::randint(/*low=*/0, /*high=*/10, {count}, torch::TensorOptions().dtype(torch::kLong));
  torch::Tensor images = kNoise * torch::randn({count, 3, 32, 32});
  for (int64_t i = 0; i < count; ++i) {
    const int64_t k = labels[i].item<int64_t>();
    const int64_t top = 4 + 16 * (k / 5);
    const int64_t left = 1 + 6 * (k % 5);
    for (int64_t channel = 0; channel < 3; ++channel) {
      images[i][channel]
          .slice(/*dim=*/0, top, top + kSide)
          .slice(/*dim=*/1, left, left + kSide)
          .add_(kBrightness * kColours[k][channel]);
    }
  }
  return {images, labels};
}

TEST(Models, ResNet8LearnsSyntheticSquares) {
  torch::manual_seed(8);
  auto [train_images, train_labels] = SquaresDataset(/*count=*/1024);
  auto [test_images, test_labels] = SquaresDataset(/*count=*/256);
  std::shared_ptr<ImageClassifierImpl> model = Make("resnet8", ModelInput{});
  ASSERT_NE(model, nullptr);
  torch::optim::SGD optimizer(model->parameters(),
                              torch::optim::SGDOptions(/*lr=*/0.05).momentum(0.9));
  constexpr int64_t kBatch = 32;
  model->train();
  for (int epoch = 0; epoch < 2; ++epoch) {
    torch::Tensor order = torch::randperm(train_images.size(0), torch::kLong);
    for (int64_t start = 0; start < order.size(0); start += kBatch) {
      torch::Tensor index = order.slice(/*dim=*/0, start, start + kBatch);
      torch::Tensor loss = torch::nn::functional::cross_entropy(
          model->forward(train_images.index_select(0, index)), train_labels.index_select(0, index));
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
    }
  }
  model->eval();
  torch::NoGradGuard no_grad;
  const double accuracy = model->forward(test_images)
                              .argmax(/*dim=*/1)
                              .eq(test_labels)
                              .to(torch::kDouble)
                              .mean()
                              .item<double>();
  EXPECT_GT(accuracy, 0.5) << "chance is 0.1";
}

// Run in a child process (a death test): the cap holds for the rest of the process. Exits
// 0 when a tensor past the budget threw LibTorch's out-of-memory error (printed) and a
// ResNet-8 step then still trained; 2-4 name what went wrong.
void CapAndAllocatePastTheBudget() {
  torch::set_num_threads(1);
  const int64_t budget = int64_t{512} << 20;
  if (CapAddressSpace(budget) == 0) std::exit(2);
  try {
    const torch::Tensor past = torch::empty({budget / 4}, torch::kFloat32);  // `budget` bytes
    std::exit(3);
  } catch (const c10::OutOfMemoryError& e) {
    const std::string what = e.what();
    std::fprintf(stderr, "%s\n", what.substr(0, what.find('\n')).c_str());
  }
  // Convolutions under the cap are ATen's own (oneDNN's JIT crashes when it cannot allocate).
  if (at::globalContext().userEnabledMkldnn()) std::exit(4);
  auto model = Make("resnet8", Input(3, 32));
  torch::nn::functional::cross_entropy(model->forward(torch::randn({16, 3, 32, 32})),
                                       torch::randint(10, {16}))
      .backward();
  std::exit(0);
}

TEST(MemoryStats, UnderACapATensorPastTheBudgetFailsAsOutOfMemoryAndTrainingGoesOn) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(CapAndAllocatePastTheBudget(), ::testing::ExitedWithCode(0),
              "out of memory: tried to allocate 536870912 bytes on the CPU");
}

}  // namespace
}  // namespace topotune
