#include "api/protocol.h"

#include <gtest/gtest.h>

#include "tuner/job_engine.h"

namespace topotune {
namespace {

TEST(Protocol, FramesCarryTheirLengthBigEndian) {
  const std::string frame = EncodeFrame({{"type", "heartbeat"}});
  ASSERT_GE(frame.size(), 4u);
  const uint32_t n = DecodeFrameLength(reinterpret_cast<const unsigned char*>(frame.data()));
  EXPECT_EQ(n, frame.size() - 4);
  StatusOr<nlohmann::json> m = ParseMessage(frame.substr(4));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)["type"], "heartbeat");
}

TEST(Protocol, RejectsGarbageWithAReason) {
  EXPECT_NE(ParseMessage("not json").status().message().find("not valid JSON"), std::string::npos);
  EXPECT_NE(ParseMessage("[1]").status().message().find("not a JSON object"), std::string::npos);
  EXPECT_NE(ParseMessage("{\"type\": 3}").status().message().find("'type'"), std::string::npos);
}

TEST(Protocol, AssignmentRoundTrips) {
  Assignment a;
  a.job_id = 4;
  a.trial.id = 17;
  a.trial.number = 2;
  a.trial.config = {64, 0.003, Optimizer::kAdam};
  a.trial.seed = 99;
  a.trial.target_epochs = 9;
  a.start_epoch = 3;
  a.checkpoint = "job4-trial2";
  a.trial.train_s = 4.25;
  a.max_train_s = 12.5;
  JobSpec spec;
  spec.model = "lenet";
  spec.dataset.path = "data/x";
  spec.target_accuracy = 0.8;
  a.trial.attempt = 3;
  StatusOr<SegmentSpec> back = SegmentSpecFromJson(ToJson(MakeSegmentSpec(a, spec)));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->trial_id, 17);
  EXPECT_EQ(back->attempt, 3);
  EXPECT_EQ(back->config.batch_size, 64);
  EXPECT_EQ(back->config.optimizer, Optimizer::kAdam);
  EXPECT_EQ(back->start_epoch, 3);
  EXPECT_EQ(back->end_epoch, 9);
  EXPECT_EQ(back->dataset.path, "data/x");
  EXPECT_EQ(back->checkpoint, "job4-trial2");
  EXPECT_DOUBLE_EQ(back->train_s_before, 4.25);
  EXPECT_DOUBLE_EQ(back->max_train_s, 12.5);
  nlohmann::json j = ToJson(*back);
  j["max_train_s"] = -1.0;
  EXPECT_FALSE(SegmentSpecFromJson(j).ok());
}

TEST(Protocol, CurvePointRejectsWrongTypesAndRanges) {
  CurvePoint p;
  p.epoch = 1;
  p.val_accuracy = 0.5;
  nlohmann::json j = ToJson(p);
  EXPECT_TRUE(CurvePointFromJson(j).ok());
  j["val_accuracy"] = "high";
  EXPECT_NE(CurvePointFromJson(j).status().message().find("val_accuracy"), std::string::npos);
  j["val_accuracy"] = 1.5;
  EXPECT_FALSE(CurvePointFromJson(j).ok());
  j.erase("val_accuracy");
  EXPECT_NE(CurvePointFromJson(j).status().message().find("missing field 'val_accuracy'"),
            std::string::npos);
}

}  // namespace
}  // namespace topotune

namespace topotune {
namespace {

TEST(Protocol, DeviceClassAndSiteRoundTripAndAreOptional) {
  DeviceProfile d{"cuda", "Orin", 8, int64_t{8} << 30, "jetson-orin", "edge-1"};
  StatusOr<DeviceProfile> back = DeviceProfileFromJson(ToJson(d));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->device_class, "jetson-orin");
  EXPECT_EQ(back->site, "edge-1");
  EXPECT_EQ(DeviceClassOf(*back), "jetson-orin");
  // An older worker sends neither: its class is its kind and cores.
  nlohmann::json old = ToJson(d);
  old.erase("class");
  old.erase("site");
  back = DeviceProfileFromJson(old);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(DeviceClassOf(*back), "cuda-8c");
  EXPECT_EQ(back->site, "");
  for (const nlohmann::json& bad : {nlohmann::json("a b"), nlohmann::json(std::string(65, 'x')),
                                    nlohmann::json(7), nlohmann::json("..\x01")}) {
    nlohmann::json j = ToJson(d);
    j["class"] = bad;
    EXPECT_FALSE(DeviceProfileFromJson(j).ok()) << bad.dump();
    j = ToJson(d);
    j["site"] = bad;
    StatusOr<DeviceProfile> got = DeviceProfileFromJson(j);
    ASSERT_FALSE(got.ok()) << bad.dump();
    EXPECT_NE(got.status().message().find("site"), std::string::npos) << got.status().message();
  }
}

// A frame's decoder refuses `j` (from the controller or from a worker), naming `field`.
void ExpectRefused(const nlohmann::json& j, bool from_controller, const std::string& field) {
  const std::string payload = j.dump();
  const Status s = from_controller ? DecodeControllerFrame(payload).status()
                                   : DecodeWorkerFrame(payload).status();
  EXPECT_FALSE(s.ok()) << payload.substr(0, 80);
  EXPECT_NE(s.message().find(field), std::string::npos) << s.message();
}

// Echo frames round-trip with their pads; a pad over kMaxEchoPadBytes, a negative or
// oversized reply, or a pad that is not a string is refused with the field named.
TEST(Protocol, EchoFramesRoundTripWithinTheirLimits) {
  const std::string pad(kMaxEchoPadBytes, 'x');
  StatusOr<ControllerFrame> echo =
      DecodeControllerFrame(EncodeFrame(ToJson(EchoFrame{7, pad, 1000})).substr(4));
  ASSERT_TRUE(echo.ok()) << echo.status().message();
  const EchoFrame& e = std::get<EchoFrame>(*echo);
  EXPECT_EQ(e.id, 7);
  EXPECT_EQ(e.pad.size(), kMaxEchoPadBytes);
  EXPECT_EQ(e.reply_bytes, 1000u);
  StatusOr<WorkerFrame> reply =
      DecodeWorkerFrame(EncodeFrame(ToJson(EchoReplyFrame{7, std::string(1000, 'x')})).substr(4));
  ASSERT_TRUE(reply.ok()) << reply.status().message();
  EXPECT_EQ(std::get<EchoReplyFrame>(*reply).pad.size(), 1000u);

  ExpectRefused({{"type", "echo"}, {"id", 1}, {"pad", pad + "x"}, {"reply_bytes", 0}}, true, "pad");
  ExpectRefused({{"type", "echo"}, {"id", 1}, {"pad", ""}, {"reply_bytes", -1}}, true,
                "reply_bytes");
  ExpectRefused({{"type", "echo"}, {"id", 1}, {"pad", ""}, {"reply_bytes", kMaxEchoPadBytes + 1}},
                true, "reply_bytes");
  ExpectRefused({{"type", "echo"}, {"id", 1}, {"pad", 5}, {"reply_bytes", 0}}, true, "pad");
  ExpectRefused({{"type", "echo_reply"}, {"id", 1}, {"pad", pad + "x"}}, false, "pad");
  ExpectRefused({{"type", "echo_reply"}, {"pad", ""}}, false, "id");
}

TEST(Protocol, LinkTestFramesRoundTripAndRefuseWhatTheyMustNot) {
  const std::string nonce = "00112233445566778899aabbccddeeff";
  StatusOr<ControllerFrame> listen =
      DecodeControllerFrame(EncodeFrame(ToJson(LinkListenFrame{3, nonce, 4 << 20})).substr(4));
  ASSERT_TRUE(listen.ok()) << listen.status().message();
  EXPECT_EQ(std::get<LinkListenFrame>(*listen).nonce, nonce);
  EXPECT_EQ(std::get<LinkListenFrame>(*listen).bytes, 4 << 20);
  StatusOr<ControllerFrame> send = DecodeControllerFrame(
      EncodeFrame(ToJson(LinkSendFrame{3, nonce, "fd00::1", 40000, 10})).substr(4));
  ASSERT_TRUE(send.ok()) << send.status().message();
  EXPECT_EQ(std::get<LinkSendFrame>(*send).host, "fd00::1");
  EXPECT_EQ(std::get<LinkSendFrame>(*send).port, 40000);
  StatusOr<WorkerFrame> listening =
      DecodeWorkerFrame(EncodeFrame(ToJson(LinkListeningFrame{3, 40000})).substr(4));
  ASSERT_TRUE(listening.ok());
  EXPECT_EQ(std::get<LinkListeningFrame>(*listening).port, 40000);
  LinkReportFrame done;
  done.id = 3;
  done.bytes = 10;
  done.seconds = 0.5;
  done.rtt_s = 0.01;
  StatusOr<WorkerFrame> report = DecodeWorkerFrame(EncodeFrame(ToJson(done)).substr(4));
  ASSERT_TRUE(report.ok());
  EXPECT_DOUBLE_EQ(std::get<LinkReportFrame>(*report).seconds, 0.5);
  LinkReportFrame failed;
  failed.id = 3;
  failed.error = "cannot connect";
  report = DecodeWorkerFrame(EncodeFrame(ToJson(failed)).substr(4));
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(std::get<LinkReportFrame>(*report).error, "cannot connect");

  // A nonce of the wrong length or alphabet; bytes over the cap or none.
  ExpectRefused({{"type", "link_listen"}, {"id", 1}, {"nonce", "abc"}, {"bytes", 10}}, true,
                "nonce");
  ExpectRefused(
      {{"type", "link_listen"}, {"id", 1}, {"nonce", std::string(32, 'G')}, {"bytes", 10}}, true,
      "nonce");
  ExpectRefused(
      {{"type", "link_listen"}, {"id", 1}, {"nonce", nonce}, {"bytes", kMaxLinkTestBytes + 1}},
      true, "bytes");
  ExpectRefused({{"type", "link_listen"}, {"id", 1}, {"nonce", nonce}, {"bytes", 0}}, true,
                "bytes");
  // A host that is not an address literal (a name would be resolved: never), a bad port.
  ExpectRefused({{"type", "link_send"},
                 {"id", 1},
                 {"nonce", nonce},
                 {"host", "example.com"},
                 {"port", 1},
                 {"bytes", 10}},
                true, "host");
  ExpectRefused({{"type", "link_send"},
                 {"id", 1},
                 {"nonce", nonce},
                 {"host", "10.0.0.1"},
                 {"port", 70000},
                 {"bytes", 10}},
                true, "port");
  ExpectRefused({{"type", "link_send"},
                 {"id", 1},
                 {"nonce", nonce},
                 {"host", "fe80::1%eth0"},
                 {"port", 1},
                 {"bytes", 10}},
                true, "host");
  EXPECT_TRUE(ValidLinkHost("10.99.1.2"));
  EXPECT_TRUE(ValidLinkHost("fd00::1"));
  EXPECT_FALSE(ValidLinkHost(""));
  EXPECT_FALSE(ValidLinkHost("fe80::1%lo"));
  ExpectRefused({{"type", "link_listening"}, {"id", 1}, {"port", 0}}, false, "port");
  ExpectRefused({{"type", "link_report"}, {"id", 1}, {"bytes", 10}, {"seconds", 0.0}, {"rtt_s", 0}},
                false, "seconds");
  ExpectRefused({{"type", "link_report"}, {"id", 1}, {"error", ""}}, false, "error");
}

// A probe's step split (protocol 3) and its seconds timed round-trip; a probe without them
// (an older worker) decodes with zeros; a negative part or seconds out of range are refused
// with the field named.
TEST(Protocol, ProbeStepPartsRoundTripAndAreOptional) {
  DeviceProbe p;
  p.model = "lenet";
  p.input = "3x32x32";
  p.batches = {{16, true, 2.0, 1000, "", 0.5, 1.25, 0.25, 0.75, /*adam_does_not_fit=*/true,
                /*timed_s=*/6.5}};
  StatusOr<DeviceProbe> back = DeviceProbeFromJson(ToJson(p));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_TRUE(back->batches[0].adam_does_not_fit);
  EXPECT_EQ(back->batches[0].timed_s, 6.5);
  EXPECT_EQ(back->batches[0].forward_ms, 0.5);
  EXPECT_EQ(back->batches[0].backward_ms, 1.25);
  EXPECT_EQ(back->batches[0].optimizer_ms, 0.25);
  EXPECT_EQ(back->batches[0].adam_optimizer_ms, 0.75);
  nlohmann::json old = ToJson(p);
  for (const char* key : {"forward_ms", "backward_ms", "optimizer_ms", "adam_optimizer_ms",
                          "adam_does_not_fit", "timed_s"}) {
    old["batches"][0].erase(key);
  }
  back = DeviceProbeFromJson(old);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_FALSE(back->batches[0].adam_does_not_fit);
  EXPECT_EQ(back->batches[0].forward_ms, 0.0);
  EXPECT_EQ(back->batches[0].adam_optimizer_ms, 0.0);
  EXPECT_EQ(back->batches[0].timed_s, 0.0);
  for (const char* key : {"backward_ms", "adam_optimizer_ms", "timed_s"}) {
    nlohmann::json bad = ToJson(p);
    bad["batches"][0][key] = -1.0;
    back = DeviceProbeFromJson(bad);
    ASSERT_FALSE(back.ok()) << key;
    EXPECT_NE(back.status().message().find(key), std::string::npos) << back.status().message();
  }
  nlohmann::json long_probe = ToJson(p);
  long_probe["batches"][0]["timed_s"] = 1e9;  // longer than a day: not a probe
  back = DeviceProbeFromJson(long_probe);
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.status().message().find("timed_s"), std::string::npos) << back.status().message();
  nlohmann::json text = ToJson(p);
  text["batches"][0]["adam_optimizer_ms"] = "fast";
  EXPECT_FALSE(DeviceProbeFromJson(text).ok());
  text = ToJson(p);
  text["batches"][0]["adam_does_not_fit"] = 1;
  back = DeviceProbeFromJson(text);
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.status().message().find("adam_does_not_fit"), std::string::npos)
      << back.status().message();
}

}  // namespace
}  // namespace topotune
