// train_test.cpp — the training library in one process: the step function against a
// hand-written step, the metrics records, the checkpoint policy, and the bridge between
// training state and checkpoints (layout from the config alone, save/load round trips sync
// and async, what a resume refuses, reshard), routing statistics (co-usage, intervals), and the
// TensorBoard framing and PNG encoding (tests/tensorboard_test.py decodes whole event files
// independently).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <zlib.h>

#include "core/json.h"
#include "core/ops/elementwise.h"
#include "core/rng.h"
#include "moe/train/config.h"
#include "checkpoint/crc32c.h"
#include "moe/train/metrics.h"
#include "moe/train/png.h"
#include "moe/train/routing_stats.h"
#include "moe/train/tensorboard.h"
#include "moe/train/step.h"
#include "moe/train/train_state.h"
#include "tests/data_test_util.h"

namespace cmoe {
namespace {

using data::testing::ScratchDir;

RunConfig tiny_run(const std::vector<std::string>& sets = {}) {
  auto cfg = config_parse("model { vocab_size: 29 d_model: 8 n_layers: 2 n_heads: 2 ffn_hidden: 8 seq_len: 6 "
                          "moe { kind: CARTESIAN interval: 2 num_experts: 4 top_k: 2 } } "
                          "train { micro_batch_size: 2 grad_accum: 2 lr: 0.01 warmup_steps: 1 steps: 10 grad_clip: 0.5 }",
                          "test");
  CMOE_CHECK(cfg.ok(), cfg.status().message());
  for (const std::string& s : sets) CMOE_CHECK(config_set(*cfg, s).ok(), s);
  CMOE_CHECK(config_validate(*cfg).ok(), config_validate(*cfg).message());
  return *cfg;
}

// Deterministic micro-batches: ids and next-token targets from a Philox stream.
BatchFn batches(const RunConfig& cfg, uint64_t seed) {
  auto n = std::make_shared<int64_t>(0);
  const int64_t B = cfg.train().micro_batch_size(), T = cfg.model().seq_len(), V = cfg.model().vocab_size();
  return [=]() -> absl::StatusOr<Batch> {
    std::vector<int32_t> ids(B * T), tgt(B * T);
    for (int64_t i = 0; i < B * T; ++i) {
      ids[i] = static_cast<int32_t>(rng_u32(seed, 1, *n * 1000 + i) % V);
      tgt[i] = static_cast<int32_t>(rng_u32(seed, 2, *n * 1000 + i) % V);
    }
    ++*n;
    return Batch{Tensor::from_ints({B, T}, ids), Tensor::from_ints({B, T}, tgt)};
  };
}

std::vector<float> flat(const Model& m) {
  std::vector<float> out;
  for (const Param& p : const_cast<Model&>(m).params()) {
    const std::vector<float> v = p.var.value().to_floats();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

TEST(TrainStep, EqualsAHandWrittenStep) {
  const RunConfig cfg = tiny_run();
  Model a(cfg.model(), 3), b(cfg.model(), 3);
  const auto& t = cfg.train();
  AdamW oa(&a.params(), {t.beta1(), t.beta2(), t.adam_eps(), t.weight_decay()});
  AdamW ob(&b.params(), {t.beta1(), t.beta2(), t.adam_eps(), t.weight_decay()});
  TrainStep step(cfg, a, oa, nullptr, batches(cfg, 9));
  BatchFn next = batches(cfg, 9);
  for (int64_t s = 0; s < 3; ++s) {
    auto r = step.run(s);
    ASSERT_TRUE(r.ok()) << r.status();
    // By hand: mean over micro-batches of the loss, global norm, clip, AdamW at lr(s).
    double loss = 0;
    for (int micro = 0; micro < 2; ++micro) {
      Batch batch = *next();
      ForwardResult f = b.forward(batch.ids, batch.targets, {});
      loss += f.ce / 2;
      ag::backward({f.loss}, {Tensor::full({}, 0.5f)});
    }
    double sq = 0;
    for (const Param& p : b.params())
      if (p.var.grad().defined()) sq += ops::sum_squares(p.var.grad());
    const double norm = std::sqrt(sq);
    ob.step(lr_at(s, t), norm > t.grad_clip() ? static_cast<float>(t.grad_clip() / norm) : 1.0f);
    for (Param& p : b.params()) p.var.zero_grad();
    EXPECT_EQ(r->record.step, s + 1);
    EXPECT_DOUBLE_EQ(r->record.loss, loss);
    EXPECT_DOUBLE_EQ(r->record.grad_norm, norm);
    EXPECT_EQ(r->record.lr, lr_at(s, t));
    EXPECT_EQ(r->record.tokens, 2 * 2 * 6);
    EXPECT_EQ(r->record.routers.size(), 2u);  // moeA and moeB of layer 0, merged over micro-batches
    EXPECT_EQ(flat(a), flat(b)) << "parameters differ after step " << s + 1;
  }
}

std::vector<json::Value> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<json::Value> out;
  for (std::string line; std::getline(in, line);) {
    auto v = json::parse(line);
    EXPECT_TRUE(v.ok()) << line;
    if (v.ok()) out.push_back(*v);
  }
  return out;
}

TEST(Metrics, OneJsonObjectPerLineWithTheDocumentedFields) {
  ScratchDir dir("metrics");
  {
    auto w = MetricsWriter::open(dir.file(""), true, 1000.0, 2e6, 2, 10, 5);
    ASSERT_TRUE(w.ok()) << w.status();
    StepRecord r;
    r.step = 1;
    r.loss = 5.25;
    r.aux = 0.02;
    r.lr = 3e-4f;
    r.grad_norm = 1.5;
    r.tokens = 4000;
    r.seconds = 2.0;
    RouterReport rr;
    rr.name = "layers.0.moeA";
    rr.counts = {1, 3};
    rr.pairs = 4;
    r.routers = {rr};
    r.comm.calls[static_cast<size_t>(parallel::CommKind::kAllReduce)] = 3;
    r.comm.bytes[static_cast<size_t>(parallel::CommKind::kAllReduce)] = 1200;
    r.comm.calls[static_cast<size_t>(parallel::CommKind::kSendRecv)] = 2;
    r.comm.bytes[static_cast<size_t>(parallel::CommKind::kSendRecv)] = 64;
    w->step(r, 0, 10);
    EvalResult ev;
    ev.loss = 4.5;
    ev.ppl = std::exp(4.5);
    ev.tokens = 77;
    w->eval(1, ev);
    w->checkpoint(1, 0.25);
    EXPECT_DOUBLE_EQ(w->tokens_per_s(r), 2000.0);
    EXPECT_DOUBLE_EQ(w->mfu(r), 1000.0 * 2000.0 / 2e6 / 2);
  }
  const std::vector<json::Value> lines = read_jsonl(dir.file("metrics.jsonl"));
  ASSERT_EQ(lines.size(), 3u);
  const json::Value& s = lines[0];
  EXPECT_EQ(s.find("step")->as_int(), 1);
  EXPECT_DOUBLE_EQ(s.find("loss")->as_double(), 5.25);
  EXPECT_DOUBLE_EQ(s.find("tokens_per_s")->as_double(), 2000.0);
  EXPECT_DOUBLE_EQ(s.find("mfu")->as_double(), 0.5);
  const json::Value* load = s.find("expert_load")->find("layers.0.moeA");
  ASSERT_NE(load, nullptr);
  EXPECT_DOUBLE_EQ(load->find("max_over_mean")->as_double(), 1.5);  // max 3 / mean 2
  EXPECT_DOUBLE_EQ(load->find("cv")->as_double(), 0.5);             // std 1 / mean 2
  // The step's traffic per kind of operation: every kind present, in both objects.
  for (const char* obj : {"comm_calls", "comm_bytes"}) {
    const json::Value* c = s.find(obj);
    ASSERT_NE(c, nullptr) << obj;
    EXPECT_EQ(c->as_object().size(), static_cast<size_t>(parallel::kNumCommKinds)) << obj;
  }
  EXPECT_EQ(s.find("comm_calls")->find("all_reduce")->as_int(), 3);
  EXPECT_EQ(s.find("comm_bytes")->find("all_reduce")->as_int(), 1200);
  EXPECT_EQ(s.find("comm_calls")->find("send_recv")->as_int(), 2);
  EXPECT_EQ(s.find("comm_bytes")->find("send_recv")->as_int(), 64);
  EXPECT_EQ(s.find("comm_bytes")->find("all_to_all_v")->as_int(), 0);
  EXPECT_DOUBLE_EQ(lines[1].find("val_loss")->as_double(), 4.5);
  EXPECT_EQ(lines[1].find("val_tokens")->as_int(), 77);
  EXPECT_DOUBLE_EQ(lines[2].find("ckpt_s")->as_double(), 0.25);
  // The text itself: fixed decimals, ", " and ": " separators (scripts grep for them).
  std::ifstream in(dir.file("metrics.jsonl"));
  std::string first;
  std::getline(in, first);
  EXPECT_EQ(first.rfind("{\"step\": 1, \"loss\": 5.250000, \"aux_loss\": 0.020000, \"lr\": 3.000000e-04, ", 0), 0u) << first;
}

TEST(Metrics, StepRecordsTheTimeSplitAndRoutingRecordsTheInterval) {
  ScratchDir dir("metrics_routing");
  {
    auto w = MetricsWriter::open(dir.file(""), true, 1000.0, 2e6, 1, 10, 5, /*tensorboard=*/true);
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_NE(w->tensorboard_path().find("/events.out.tfevents."), std::string::npos) << w->tensorboard_path();
    StepRecord r;
    r.step = 5;
    r.tokens = 100;
    r.seconds = 1.0;
    r.data_s = 0.25;
    r.comm_s = 0.125;
    RoutingInterval iv;
    iv.first_step = 0;
    iv.last_step = 5;
    iv.routers = {RouterReport{"layers.0.moeA", {3, 1}, 4, 0, 0}, RouterReport{"layers.0.moeB", {2, 2}, 4, 0, 0}};
    iv.co_usage = {CoUsage{"layers.0", "layers.0.moeA", "layers.0.moeB", 2, 2, {2, 1, 0, 1}}};
    r.routing = iv;
    w->step(r, 0, 10);
  }
  const std::vector<json::Value> lines = read_jsonl(dir.file("metrics.jsonl"));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_DOUBLE_EQ(lines[0].find("compute_s")->as_double(), 0.625);
  EXPECT_DOUBLE_EQ(lines[0].find("comm_wait_s")->as_double(), 0.125);
  EXPECT_DOUBLE_EQ(lines[0].find("data_wait_s")->as_double(), 0.25);
  EXPECT_EQ(lines[1].find("loss"), nullptr);  // scripts select step records by "loss"
  const json::Value* ro = lines[1].find("routing");
  ASSERT_NE(ro, nullptr);
  EXPECT_EQ(lines[1].find("step")->as_int(), 5);
  EXPECT_EQ(json::serialize(*ro->find("routers")->find("layers.0.moeA")), "{\"counts\":[3,1],\"pairs\":4,\"dropped\":0}");
  EXPECT_EQ(json::serialize(*ro->find("co_usage")->find("layers.0")->find("counts")), "[[2,1],[0,1]]");
}

TEST(RoutingStats, CoUsagePairsEveryAChoiceWithEveryBChoice) {
  RunConfig cfg = tiny_run();
  Model model(cfg.model(), 5);
  Batch b = *batches(cfg, 3)();
  ForwardResult f = model.forward(b.ids, b.targets, ForwardOptions());
  ASSERT_EQ(f.co_usage.size(), 1u);  // one Cartesian layer (layer 0; layer 1 is dense)
  const CoUsage& c = f.co_usage[0];
  EXPECT_EQ(c.layer, "layers.0");
  EXPECT_EQ(c.router_a, "layers.0.moeA");
  EXPECT_EQ(c.router_b, "layers.0.moeB");
  ASSERT_EQ(c.counts.size(), 16u);
  const int64_t tokens = b.ids.numel(), k = 2;
  int64_t total = 0;
  for (int64_t v : c.counts) total += v;
  EXPECT_EQ(total, tokens * k * k);
  // Row a sums to (A's count of a) * k_B, column b to (B's count of b) * k_A.
  for (int64_t a = 0; a < 4; ++a) {
    int64_t row = 0, col = 0;
    for (int64_t j = 0; j < 4; ++j) row += c.counts[a * 4 + j], col += c.counts[j * 4 + a];
    EXPECT_EQ(row, f.routers[0].counts[a] * k) << a;
    EXPECT_EQ(col, f.routers[1].counts[a] * k) << a;
  }
  // Other variants have no co-usage.
  RunConfig smoe = tiny_run({"model.moe.kind=SMOE"});
  Model m2(smoe.model(), 5);
  EXPECT_TRUE(m2.forward(b.ids, b.targets, ForwardOptions()).co_usage.empty());
}

TEST(Model, DisableTop1CanBeLimitedToOneExpertSet) {
  RunConfig cfg = tiny_run();
  Model model(cfg.model(), 5);
  Batch b = *batches(cfg, 3)();
  ag::NoGradGuard no_grad;
  ForwardOptions o;
  const ForwardResult normal = model.forward(b.ids, b.targets, o);
  o.disable_top1 = true;
  const ForwardResult both = model.forward(b.ids, b.targets, o);
  o.disable_top1_set = "moeB";
  const ForwardResult only_b = model.forward(b.ids, b.targets, o);
  // A routes as normal when only B's top-1 is disabled; B's choices change either way.
  EXPECT_EQ(only_b.routers[0].counts, normal.routers[0].counts);
  EXPECT_NE(both.routers[0].counts, normal.routers[0].counts);
  EXPECT_NE(only_b.routers[1].counts, normal.routers[1].counts);
  EXPECT_NE(only_b.ce, normal.ce);
  EXPECT_NE(only_b.ce, both.ce);
}

TEST(Model, RouterReportsSayHowDecidedEachRouterWas) {
  RunConfig cfg = tiny_run({"model.moe.shared_expert=true"});
  Model model(cfg.model(), 5);
  Batch b = *batches(cfg, 3)();
  const ForwardResult f = model.forward(b.ids, b.targets, ForwardOptions());
  const int64_t N = b.ids.numel();
  ASSERT_EQ(f.routers.size(), 2u);
  for (const RouterReport& r : f.routers) {
    EXPECT_EQ(r.tokens, N);
    EXPECT_EQ(r.prob_tokens, N);
    const double top1 = r.top1_prob_sum / N, ent = r.entropy_sum / N, gate = r.routed_gate_sum / N;
    EXPECT_GE(top1, 1.0 / 4 - 1e-6);  // E = 4: at least uniform
    EXPECT_LE(top1, 1.0);
    EXPECT_GT(ent, 0.0);
    EXPECT_LE(ent, std::log(4.0) + 1e-6);
    EXPECT_GT(gate, 0.0);
    EXPECT_LT(gate, 1.0);
  }
  // Without a shared expert the routed output has all the weight; hash routers have no
  // probabilities.
  RunConfig hash = tiny_run({"model.moe.kind=HASH", "model.moe.shared_expert=false"});
  Model mh(hash.model(), 5);
  const ForwardResult fh = mh.forward(b.ids, b.targets, ForwardOptions());
  ASSERT_EQ(fh.routers.size(), 1u);
  EXPECT_EQ(fh.routers[0].prob_tokens, 0);
  EXPECT_DOUBLE_EQ(fh.routers[0].routed_gate_sum, static_cast<double>(N));
}

TEST(RoutingStats, SumsAnIntervalAndStartsAfresh) {
  RoutingStats rs(3);
  const std::vector<CoUsage> cu = {CoUsage{"layers.0", "a", "b", 1, 2, {1, 2}}};
  rs.add(1, {RouterReport{"a", {1, 0}, 1, 0, 0.5}}, cu);
  EXPECT_FALSE(rs.due(1, false));
  rs.add(2, {RouterReport{"a", {0, 2}, 2, 1, 0.5}}, cu);
  EXPECT_TRUE(rs.due(2, true));  // the last step of a run closes the interval
  EXPECT_TRUE(rs.due(3, false));
  auto iv = rs.take(nullptr);
  ASSERT_TRUE(iv.ok());
  EXPECT_EQ(iv->first_step, 0);
  EXPECT_EQ(iv->last_step, 2);
  ASSERT_EQ(iv->routers.size(), 1u);
  EXPECT_EQ(iv->routers[0].counts, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(iv->routers[0].pairs, 3);
  EXPECT_EQ(iv->routers[0].dropped, 1);
  EXPECT_EQ(iv->co_usage[0].counts, (std::vector<int64_t>{2, 4}));
  rs.add(3, {RouterReport{"a", {5, 5}, 10, 0, 0}}, {});
  iv = rs.take(nullptr);
  ASSERT_TRUE(iv.ok());
  EXPECT_EQ(iv->first_step, 2);
  EXPECT_EQ(iv->routers[0].counts, (std::vector<int64_t>{5, 5}));
  EXPECT_TRUE(iv->co_usage.empty());
}

TEST(TensorBoard, RecordFramingAndMaskedCrc) {
  // CRC-32C's check value, then the mask ((c >> 15) | (c << 17)) + 0xa282ead8.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  const uint32_t c = 0xE3069283u;
  EXPECT_EQ(tfrecord_masked_crc("123456789", 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);
  const std::string rec = tfrecord_frame("abc");
  ASSERT_EQ(rec.size(), 8u + 4 + 3 + 4);
  EXPECT_EQ(rec.substr(0, 8), std::string("\x03\0\0\0\0\0\0\0", 8));  // u64 length, little-endian
  auto u32 = [&](size_t at) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(rec[at + i]);
    return v;
  };
  EXPECT_EQ(u32(8), tfrecord_masked_crc(rec.data(), 8));
  EXPECT_EQ(rec.substr(12, 3), "abc");
  EXPECT_EQ(u32(15), tfrecord_masked_crc("abc", 3));
}

TEST(TensorBoard, PngIsSignatureIhdrAndZlibScanlines) {
  const std::vector<uint8_t> rgb = {255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9};  // 2 x 2
  const std::string png = png_encode_rgb(2, 2, rgb);
  ASSERT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_EQ(png.substr(16, 13), std::string("\0\0\0\x02\0\0\0\x02\x08\x02\0\0\0", 13));
  const size_t idat = png.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n = (n << 8) | static_cast<uint8_t>(png[idat - 4 + i]);
  std::vector<uint8_t> raw(2 * 7);
  uLongf len = raw.size();
  ASSERT_EQ(uncompress(raw.data(), &len, reinterpret_cast<const Bytef*>(png.data() + idat + 4), n), Z_OK);
  EXPECT_EQ(raw, (std::vector<uint8_t>{0, 255, 0, 0, 0, 255, 0, 0, 0, 0, 255, 9, 9, 9}));
  EXPECT_EQ(png.substr(png.size() - 8, 4), "IEND");
}

TEST(TensorBoard, HeatmapColoursGetBrighterWithTheCount) {
  auto lum = [](std::array<uint8_t, 3> c) { return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]; };
  double prev = -1;
  for (int i = 0; i <= 1000; ++i) {
    const double l = lum(colormap_rgb(i / 1000.0));
    EXPECT_GE(l, prev) << i;
    prev = l;
  }
  EXPECT_LT(lum(colormap_rgb(0)), 40);
  EXPECT_GT(lum(colormap_rgb(1)), 200);
  int w = 0, h = 0;
  const std::string png = png_heatmap({0, 1, 2, 4, 0, 0}, 2, 3, 4, &w, &h);
  EXPECT_EQ(w, 12);
  EXPECT_EQ(h, 8);
  EXPECT_EQ(png.substr(1, 3), "PNG");
}

TEST(CheckpointPolicy, SavesAtTheIntervalTheLastStepAndOnStop) {
  RunConfig cfg = tiny_run({"checkpoint.interval=4"});
  ScratchDir dir("policy");
  TrainStateSaver saver(dir.file("ck"), cfg, nullptr);
  CheckpointPolicy p(cfg.checkpoint(), saver, false, [](int64_t s) { return RunCounters{s, 0, 0}; });
  EXPECT_FALSE(p.save_due(3, false, false));
  EXPECT_TRUE(p.save_due(4, false, false));
  EXPECT_TRUE(p.save_due(5, true, false));
  EXPECT_TRUE(p.save_due(5, false, true));
  cfg.mutable_checkpoint()->set_interval(0);
  CheckpointPolicy q(cfg.checkpoint(), saver, false, [](int64_t s) { return RunCounters{s, 0, 0}; });
  EXPECT_FALSE(q.save_due(4, false, false));
}

// Fills every parameter, moment and bias with distinct values, so a mix-up shows.
void scramble(Model& m, AdamW& opt, uint64_t seed) {
  for (size_t i = 0; i < m.params().size(); ++i) {
    rng_fill_normal(m.params()[i].var.mutable_value(), 0.0f, 1.0f, seed, 3 * i);
    rng_fill_normal(opt.exp_avg()[i], 0.0f, 1.0f, seed, 3 * i + 1);
    rng_fill_normal(opt.exp_avg_sq()[i], 0.0f, 1.0f, seed, 3 * i + 2);
  }
  for (size_t i = 0; i < m.router_biases().size(); ++i)
    rng_fill_normal(m.router_biases()[i].var.mutable_value(), 0.0f, 1.0f, seed, 1000 + i);
  opt.set_steps(17);
}

std::vector<float> state_of(Model& m, const AdamW& opt) {
  std::vector<float> out = flat(m);
  for (const auto* v : {&opt.exp_avg(), &opt.exp_avg_sq()})
    for (const Tensor& t : *v) {
      auto f = t.to_floats();
      out.insert(out.end(), f.begin(), f.end());
    }
  for (Param& b : m.router_biases()) {
    auto f = b.var.value().to_floats();
    out.insert(out.end(), f.begin(), f.end());
  }
  return out;
}

TEST(TrainState, LayoutFromTheConfigMatchesTheModel) {
  const RunConfig cfg = tiny_run({"model.moe.aux_free_bias=true"});
  Model m(cfg.model(), 1);
  std::vector<StateSlot> slots = state_layout(cfg.model(), m.shard());
  ASSERT_EQ(slots.size(), 3 * m.params().size() + m.router_biases().size());
  EXPECT_EQ(slots[1].name, "optim.exp_avg." + m.params()[0].name);
  EXPECT_TRUE(slots[2].optimizer);
  bind_state(slots, m, nullptr);
  EXPECT_TRUE(slots[0].data.same_storage(m.params()[0].var.value()));
  EXPECT_FALSE(slots[1].data.defined());  // no optimizer: moments unbound
  EXPECT_EQ(slots.back().name, m.router_biases().back().name);
  // An expert-parallel shard's slots are its rows of the global tensors.
  const ModelShard shard = pipeline_shard(2, 1, 0, 2, 1);
  for (const StateSlot& s : state_layout(cfg.model(), shard)) {
    if (s.name.find("experts.w1") == std::string::npos) continue;
    EXPECT_TRUE(s.sliced);
    EXPECT_EQ(s.global[0], 4);
    EXPECT_EQ(s.local[0], 2);
    EXPECT_EQ(s.row0, 2);
  }
}

TEST(TrainState, SaveAndLoadRoundTripSyncAndAsync) {
  for (bool async : {false, true}) {
    SCOPED_TRACE(async ? "async" : "sync");
    RunConfig cfg = tiny_run({"model.moe.aux_free_bias=true"});
    cfg.mutable_checkpoint()->set_async(async);
    ScratchDir dir("state");
    Model a(cfg.model(), 1);
    const auto& t = cfg.train();
    AdamW oa(&a.params(), {t.beta1(), t.beta2(), t.adam_eps(), t.weight_decay()});
    scramble(a, oa, 5);
    const std::vector<float> before = state_of(a, oa);
    TrainStateSaver saver(dir.file("ck"), cfg, nullptr);
    auto saved = saver.save(a, oa, RunCounters{6, 600, 24});
    ASSERT_TRUE(saved.ok()) << saved.status();
    if (async) {
      EXPECT_EQ(*saved, "");  // started; committed by finish()
      scramble(a, oa, 6);     // the snapshot was taken at save(): later changes are not in it
      auto done = saver.finish();
      ASSERT_TRUE(done.ok()) << done.status();
      saved = done;
    }
    EXPECT_EQ(*saved, dir.file("ck") + "/step_00000006");
    auto ck = CheckpointReader::open(*checkpoint_latest(dir.file("ck")));
    ASSERT_TRUE(ck.ok()) << ck.status();
    Model b(cfg.model(), 2);
    AdamW ob(&b.params(), {t.beta1(), t.beta2(), t.adam_eps(), t.weight_decay()});
    auto c = load_train_state(**ck, cfg, b, &ob);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->step, 6);
    EXPECT_EQ(c->tokens_seen, 600);
    EXPECT_EQ(c->consumed_samples, 24);
    EXPECT_EQ(ob.steps(), 17);
    EXPECT_EQ(state_of(b, ob), before);
  }
}

TEST(TrainState, AResumeRefusesMissingExtraAndMisshapenTensors) {
  const RunConfig cfg = tiny_run();
  ScratchDir dir("refuse");
  Model a(cfg.model(), 1);
  const auto& t = cfg.train();
  AdamW oa(&a.params(), {t.beta1(), t.beta2(), t.adam_eps(), t.weight_decay()});
  TrainStateSaver saver(dir.file("ck"), cfg, nullptr);
  ASSERT_TRUE(saver.save(a, oa, RunCounters{1, 0, 0}).ok());
  auto good = CheckpointReader::open(dir.file("ck") + "/step_00000001");
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(check_state_tensors(**good, cfg.model()).ok());

  // Rewrites the checkpoint's tensors through edit(), saved as step 2.
  auto variant_of = [&](const std::function<void(std::vector<NamedTensor>&)>& edit) {
    auto loaded = checkpoint_load(dir.file("ck") + "/step_00000001");
    CMOE_CHECK(loaded.ok(), loaded.status().message());
    std::vector<NamedTensor> tensors;
    for (auto& [name, tensor] : loaded->tensors) tensors.push_back({name, tensor});
    edit(tensors);
    checkpoint::Manifest meta = loaded->manifest;
    meta.clear_tensors();
    meta.set_step(2);
    auto d = checkpoint_save(dir.file("bad"), meta, tensors, 5);
    CMOE_CHECK(d.ok(), d.status().message());
    auto r = CheckpointReader::open(*d);
    CMOE_CHECK(r.ok(), r.status().message());
    return std::move(*r);
  };
  const std::string victim = "layers.0.moeB.experts.w2";
  auto renamed = variant_of([&](std::vector<NamedTensor>& ts) {
    for (auto& n : ts)
      if (n.name == victim) n.name = "layers.0.moeB.experts.w9";
  });
  absl::Status s = check_state_tensors(*renamed, cfg.model());
  EXPECT_NE(std::string(s.message()).find("no tensor " + victim), std::string::npos) << s;
  Model b(cfg.model(), 2);
  EXPECT_FALSE(load_train_state(*renamed, cfg, b, nullptr).ok());

  std::filesystem::remove_all(dir.file("bad"));
  auto extra = variant_of([&](std::vector<NamedTensor>& ts) { ts.push_back({"stray.weight", Tensor::zeros({3}, DType::kF32)}); });
  s = check_state_tensors(*extra, cfg.model());
  EXPECT_NE(std::string(s.message()).find("tensor stray.weight has no place"), std::string::npos) << s;

  std::filesystem::remove_all(dir.file("bad"));
  auto reshaped = variant_of([&](std::vector<NamedTensor>& ts) {
    for (auto& n : ts)
      if (n.name == "embed.weight") n.tensor = Tensor::zeros({29, 4}, DType::kF32);
  });
  s = check_state_tensors(*reshaped, cfg.model());
  EXPECT_NE(std::string(s.message()).find("tensor embed.weight is f32 (29, 4)"), std::string::npos) << s;
}

TEST(TrainState, ReshardWritesEachWritersFileAndKeepsEveryValue) {
  RunConfig cfg = tiny_run();
  ScratchDir dir("reshard");
  Model a(cfg.model(), 1);
  const auto& t = cfg.train();
  AdamW oa(&a.params(), {t.beta1(), t.beta2(), t.adam_eps(), t.weight_decay()});
  scramble(a, oa, 8);
  TrainStateSaver saver(dir.file("ck"), cfg, nullptr);
  ASSERT_TRUE(saver.save(a, oa, RunCounters{3, 0, 0}).ok());
  auto src = CheckpointReader::open(dir.file("ck") + "/step_00000003");
  ASSERT_TRUE(src.ok());
  RunConfig target = cfg;
  target.mutable_parallel()->set_pp(2);
  target.mutable_parallel()->set_dp(2);
  target.mutable_parallel()->set_ep(2);
  auto out = reshard_checkpoint(**src, target, dir.file("out"));
  ASSERT_TRUE(out.ok()) << out.status();
  for (const char* f : {"shard_pp000_ep000.bin", "shard_pp000_ep001.bin", "shard_pp001_ep000.bin", "shard_pp001_ep001.bin"})
    EXPECT_TRUE(std::filesystem::exists(*out + "/" + f)) << f;
  auto re = CheckpointReader::open(*out);
  ASSERT_TRUE(re.ok()) << re.status();
  Model b(cfg.model(), 2);
  AdamW ob(&b.params(), {t.beta1(), t.beta2(), t.adam_eps(), t.weight_decay()});
  ASSERT_TRUE(load_train_state(**re, cfg, b, &ob).ok());
  EXPECT_EQ(state_of(b, ob), state_of(a, oa));
  // A layout the model cannot take is refused before anything is written.
  target.mutable_parallel()->set_pp(3);
  target.mutable_parallel()->set_dp(1);
  target.mutable_parallel()->set_ep(1);
  EXPECT_NE(std::string(reshard_checkpoint(**src, target, dir.file("out3")).status().message()).find("exceeds model.n_layers"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir.file("out3") + "/step_00000003"));
}

}  // namespace
}  // namespace cmoe
