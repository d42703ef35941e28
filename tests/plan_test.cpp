// plan_test.cpp — the layout planner (moe/train/plan.h) in one process, against what the code
// it models does:
//   - activation memory: the CPU allocator's bytes in use after a micro-batch's forward (every
//     variant, f32 and bf16, recomputation, first / middle / last pipeline stage) within 15% of
//     the plan's activations_per_micro; the high-water mark of a whole training step within 15%
//     of the plan's peak;
//   - parameters and AdamW state: the bytes the model and optimizer allocate, exactly;
//   - FLOPs: the stages' forward + backward add up to Model::flops_per_token;
//   - the enumeration: the layouts cmoe can run (pp * dp = N, ep | dp, ep | experts), what does
//     not fit is marked, and bad hardware descriptions are refused with the field named;
//   - a CPU node's pipeline simulated on shared cores (against the textbook 1F1B time and the
//     node's work), --hardware cpu's measured mfu and routing imbalance, and the imbalance's
//     extra expert work on the critical path.
// The multi-rank checks (collective bytes, ZeRO-1 state, per-rank peaks) are
// tests/parallel/plan_ranks_test.cpp.
#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "data_test_util.h"
#include "core/allocator.h"
#include "core/rng.h"
#include "moe/model.h"
#include "moe/params.h"
#include "moe/train/config.h"
#include "moe/train/optimizer.h"
#include "moe/train/plan.h"
#include "moe/train/step.h"

namespace cmoe {
namespace {

RunConfig load(const std::string& name, const std::vector<std::string>& sets = {}) {
  auto cfg = config_load(std::string(CMOE_SOURCE_DIR) + "/configs/" + name, sets);
  CMOE_CHECK(cfg.ok(), cfg.status().message());
  return *cfg;
}

Allocator& cpu_alloc() { return allocator_for(DeviceType::kCPU); }
int64_t in_use() { return static_cast<int64_t>(cpu_alloc().bytes_in_use()); }

Tensor random_ids(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  std::vector<int32_t> v(B * T);
  for (int64_t i = 0; i < B * T; ++i) v[i] = static_cast<int32_t>(rng_u32(seed, 3, i) % V);
  return Tensor::from_ints({B, T}, v);
}

// A model whose parameters are a cheap deterministic pattern (Philox initialisation of
// cpu-small's 48M parameters would dominate the test's time; memory does not depend on values).
Model quick_model(const config::ModelConfig& m, const ModelShard& shard = {}) {
  Model model(m, 1, shard, /*init=*/false);
  constexpr float kPattern[16] = {0.01f, -0.02f, 0.015f, 0.0f, -0.005f, 0.02f, -0.01f, 0.005f,
                                  -0.015f, 0.01f, 0.0f, -0.02f, 0.02f, -0.005f, 0.005f, -0.01f};
  for (Param& p : model.params()) {
    float* v = p.var.mutable_value().data<float>();
    for (int64_t i = 0, n = p.var.value().numel(); i < n; ++i) v[i] = kPattern[(i + (i >> 4)) & 15];
  }
  return model;
}

// Bytes a micro-batch's forward keeps on stage `stage` of `pp` (one process: no expert
// parallelism), measured as the allocator's growth while its result is alive.
int64_t measured_activations(const RunConfig& cfg, int pp, int stage) {
  const auto& m = cfg.model();
  const int64_t B = cfg.train().micro_batch_size(), T = m.seq_len();
  Model model = quick_model(m, pipeline_shard(m.n_layers(), pp, stage, 1, 0));
  ForwardOptions o;
  o.compute_dtype = compute_dtype(cfg.train());
  o.recompute_attention = cfg.train().recompute();
  ag::Var x_in;
  if (stage > 0) {
    Tensor x = Tensor::empty({B * T, m.d_model()}, DType::kF32);
    rng_fill_normal(x, 0.0f, 1.0f, 9, 1, 0);
    x_in = ag::Var(x, true);
  }
  const int64_t before = in_use();
  Tensor ids = random_ids(B, T, m.vocab_size(), 1), targets = random_ids(B, T, m.vocab_size(), 2);
  ForwardResult r = model.forward_stage(ids, x_in, targets, o);
  const int64_t after = in_use();
  return after - before;
}

struct Case {
  std::string name;
  std::string config;
  std::vector<std::string> sets;
  std::vector<int> pps = {1, 2};  // pipeline sizes to check the stages of
};

std::vector<Case> activation_cases() {
  std::vector<Case> cases;
  for (const char* kind : {"dense", "smoe", "fine_grained", "cartesian", "hash", "topp"})
    cases.push_back({std::string("tiny ") + kind, "tiny.textproto", {std::string("model.moe.kind=") + kind}});
  cases.push_back({"tiny bf16", "tiny.textproto", {"train.precision=bf16"}});
  cases.push_back({"tiny recompute", "tiny.textproto", {"train.recompute=true"}});
  cases.push_back({"tiny no shared, z-loss", "tiny.textproto", {"model.moe.shared_expert=false", "model.moe.z_loss_coef=0.001"}});
  cases.push_back({"tiny capacity 1.0", "tiny.textproto", {"model.moe.kind=smoe", "model.moe.capacity_factor=1.0"}});
  cases.push_back({"cpu-small", "cpu-small.textproto", {"train.micro_batch_size=2"}});
  cases.push_back({"cpu-small bf16 recompute", "cpu-small.textproto",
                   {"train.micro_batch_size=2", "train.precision=bf16", "train.recompute=true"}, {1}});
  return cases;
}

TEST(Plan, ActivationsPerMicroBatchMatchTheAllocator) {
  for (const Case& c : activation_cases()) {
    for (const int pp : c.pps) {
      RunConfig cfg = load(c.config, c.sets);
      cfg.mutable_parallel()->set_pp(pp);
      for (int stage = 0; stage < pp; ++stage) {
        auto plan = plan_rank(cfg, stage);
        ASSERT_TRUE(plan.ok()) << plan.status();
        const double want = static_cast<double>(plan->mem.activations_per_micro);
        const double got = static_cast<double>(measured_activations(cfg, pp, stage));
        std::printf("%-28s pp %d stage %d: plan %10.0f  measured %10.0f  (%+.2f%%)\n", c.name.c_str(), pp, stage, want, got,
                    100 * (want / got - 1));
        EXPECT_NEAR(want / got, 1.0, 0.15) << c.name << " pp " << pp << " stage " << stage;
      }
    }
  }
}

// A whole step on one process: parameters and AdamW moments exactly, the high-water mark of the
// step within 15% of the plan's peak.
TEST(Plan, StepPeakAndStateMatchTheRun) {
  for (const Case& c : {Case{"tiny", "tiny.textproto", {}}, Case{"tiny accum 3", "tiny.textproto", {"train.grad_accum=3"}},
                        Case{"tiny bf16", "tiny.textproto", {"train.precision=bf16"}},
                        Case{"cpu-small, 2 layers", "cpu-small.textproto", {"train.micro_batch_size=1", "model.n_layers=2"}}}) {
    const RunConfig cfg = load(c.config, c.sets);
    auto plan = plan_rank(cfg, 0);
    ASSERT_TRUE(plan.ok()) << plan.status();
    const int64_t base = in_use();
    Model model = quick_model(cfg.model());
    AdamW opt(&model.params(), {});
    int64_t params = 0, moments = 0;
    for (const Param& p : model.params()) params += static_cast<int64_t>(p.var.value().nbytes());
    for (size_t i = 0; i < model.params().size(); ++i)
      moments += static_cast<int64_t>(opt.exp_avg()[i].nbytes() + opt.exp_avg_sq()[i].nbytes());
    EXPECT_EQ(plan->mem.params, params) << c.name;
    EXPECT_EQ(plan->mem.optimizer, moments) << c.name;
    EXPECT_EQ(plan->mem.static_bytes() + base, in_use()) << c.name << ": the model and optimizer allocate nothing else";
    const auto& t = cfg.train();
    const int64_t B = t.micro_batch_size(), T = cfg.model().seq_len();
    int64_t n = 0;
    TrainStep step(cfg, model, opt, nullptr, [&]() -> absl::StatusOr<Batch> {
      ++n;
      return Batch{random_ids(B, T, cfg.model().vocab_size(), 2 * n), random_ids(B, T, cfg.model().vocab_size(), 2 * n + 1)};
    });
    cpu_alloc().reset_peak();
    ASSERT_TRUE(step.run(0).ok());
    const double got = static_cast<double>(cpu_alloc().peak_bytes()) - static_cast<double>(base);
    const double want = static_cast<double>(plan->mem.peak);
    std::printf("%-16s step peak: plan %10.0f  measured %10.0f  (%+.2f%%)\n", c.name.c_str(), want, got, 100 * (want / got - 1));
    EXPECT_NEAR(want / got, 1.0, 0.15) << c.name;
  }
}

TEST(Plan, StageFlopsAddUpToTheModelsFlopsPerToken) {
  for (const Case& c : activation_cases()) {
    RunConfig cfg = load(c.config, c.sets);
    const double tokens = double(cfg.train().micro_batch_size()) * cfg.model().seq_len();
    const double want = Model(cfg.model(), 1, {}, false).flops_per_token() * tokens;
    for (const int pp : c.pps) {
      cfg.mutable_parallel()->set_pp(pp);
      double got = 0;
      for (int s = 0; s < pp; ++s) {
        auto p = plan_rank(cfg, s);
        ASSERT_TRUE(p.ok());
        got += p->fwd_flops + p->bwd_flops;
        EXPECT_DOUBLE_EQ(p->bwd_flops, 2 * p->fwd_flops);
      }
      EXPECT_NEAR(got / want, 1.0, 1e-12) << c.name << " pp " << pp;
    }
  }
}

TEST(Plan, ExpectedRanksPerTokenAndWireBytes) {
  EXPECT_DOUBLE_EQ(plan_expected_ranks_per_token(16, 1, 2), 1.0);
  EXPECT_NEAR(plan_expected_ranks_per_token(4, 4, 2), 2.0, 1e-12);  // one expert per rank: k ranks
  EXPECT_NEAR(plan_expected_ranks_per_token(4, 2, 4), 2.0, 1e-12);  // every expert: every rank
  // E = 16, ep = 2, k = 2: 1 + P(the two land on different halves) = 1 + 2 * 8 * 8 / (16 * 15).
  EXPECT_NEAR(plan_expected_ranks_per_token(16, 2, 2), 2 - 2 * (8.0 / 16) * (7.0 / 15), 1e-12);
  using parallel::CommKind;
  EXPECT_DOUBLE_EQ(plan_wire_bytes(CommKind::kAllReduce, 4, 100), 150);
  EXPECT_DOUBLE_EQ(plan_wire_bytes(CommKind::kReduceScatter, 4, 100), 75);
  EXPECT_DOUBLE_EQ(plan_wire_bytes(CommKind::kAllGather, 4, 25), 75);
  EXPECT_DOUBLE_EQ(plan_wire_bytes(CommKind::kAllToAllV, 4, 100), 75);
  EXPECT_DOUBLE_EQ(plan_wire_bytes(CommKind::kSendRecv, 2, 100), 100);
  EXPECT_DOUBLE_EQ(plan_wire_bytes(CommKind::kAllReduce, 1, 100), 0);
}

TEST(Plan, EnumeratesTheLayoutsCmoeCanRun) {
  const RunConfig cfg = load("paper/moe-base-cartesian.textproto");
  auto hw = hardware_load("h100", nullptr);
  ASSERT_TRUE(hw.ok()) << hw.status();
  PlanOptions opt;
  opt.gpus = 16;
  opt.zero1 = {false};
  auto plans = plan_layouts(cfg, *hw, opt);
  ASSERT_TRUE(plans.ok()) << plans.status();
  // pp in {1, 2, 4, 8, 16 > n_layers 12: no}, dp = 16 / pp, ep | dp and ep | 16 experts.
  std::set<std::tuple<int, int, int>> want;
  for (int pp : {1, 2, 4, 8})
    for (int ep = 1; ep <= 16 / pp; ep *= 2) want.insert({pp, 16 / pp, ep});
  std::set<std::tuple<int, int, int>> got;
  for (const LayoutPlan& p : *plans) {
    got.insert({p.layout.pp, p.layout.dp, p.layout.ep});
    EXPECT_EQ(p.layout.pp * p.layout.dp, 16);
    EXPECT_EQ(p.global_batch, p.micro_batch * p.layout.dp * p.grad_accum);
    EXPECT_GT(p.time.total, 0);
    const StepTime& t = p.time;
    EXPECT_NEAR(t.compute + t.bubble + t.ep_comm + t.pp_comm + t.dp_comm + t.optimizer + t.other, t.total, 1e-12 * t.total);
    EXPECT_NEAR(p.tokens_per_s * t.total, double(p.tokens_per_step), 1e-6 * p.tokens_per_step);
    if (p.layout.pp == 1) {
      EXPECT_EQ(t.bubble, 0);
    }
  }
  EXPECT_EQ(got, want);
  // Ranked: the fitting ones first, fastest first.
  for (size_t i = 1; i < plans->size(); ++i) {
    const LayoutPlan &a = (*plans)[i - 1], &b = (*plans)[i];
    EXPECT_TRUE(a.fits >= b.fits);
    if (a.fits && b.fits) {
      EXPECT_GE(a.tokens_per_s, b.tokens_per_s);
    }
  }
  // A fixed global batch sets grad_accum; ZeRO-1 both ways doubles the dp > 1 layouts.
  opt.global_batch = 64;
  opt.zero1 = {false, true};
  plans = plan_layouts(cfg, *hw, opt);
  ASSERT_TRUE(plans.ok());
  for (const LayoutPlan& p : *plans) EXPECT_EQ(p.global_batch, 64);
  // Too big for the device: MoE-Large at a long micro-batch on one GPU.
  opt = PlanOptions{};
  opt.gpus = 1;
  opt.micro_batches = {64};
  plans = plan_layouts(load("paper/moe-large-cartesian.textproto"), *hw, opt);
  ASSERT_TRUE(plans.ok());
  ASSERT_EQ(plans->size(), 1u);
  EXPECT_FALSE((*plans)[0].fits);
  // No layout at all.
  opt.global_batch = 3;
  opt.gpus = 2;
  opt.micro_batches = {2};
  EXPECT_FALSE(plan_layouts(cfg, *hw, opt).ok());
}

// One CPU node whose ranks share its cores: the pipeline is the 1F1B schedule simulated on the
// cores. Where every rank has cores of its own (cores a multiple of the ranks) the simulation is
// the textbook 1F1B time, sum of the stages' slots + (M - 1) * the slowest; where all share
// one core it is all of the node's work at one core's rate (a core never idles: some stage can
// always run); in between it is more than the node's work at all cores' rate (cores idle while
// the pipeline fills) and at most the textbook time with every rank slowed to cores / ranks.
TEST(Plan, SharedCpuNodeSimulatesThePipeline) {
  const RunConfig base = load("cpu-small.textproto", {"train.micro_batch_size=4", "train.grad_accum=4",
                                                      "parallel.pp=4"});
  auto hw_for = [](int cores) {
    auto hw = hardware_parse(absl::StrCat("name: \"node\" peak_tflops_bf16: 0.8 peak_tflops_f32: 0.4 memory_gib: 64 "
                                          "memory_gbs: 1e6 intra_node_gbs: 1e6 inter_node_gbs: 1e6 mfu: 0.5 "
                                          "cores_per_node: ", cores, " devices_per_node: ", std::max(cores, 4)),
                             "node.textproto");
    CMOE_CHECK(hw.ok(), hw.status().message());
    return *hw;
  };
  const double M = 4;
  for (int cores : {1, 2, 4, 8}) {
    const Hardware hw = hw_for(cores);
    auto p = plan_layout(base, hw, /*gpus_per_node=*/0);
    ASSERT_TRUE(p.ok()) << p.status();
    const double core_rate = hw.peak_flops(DType::kF32) * 0.5 / cores;
    const int threads = std::max(1, cores / 4);
    double work = 0, sum_slot = 0, max_slot = 0;
    for (const RankPlan& rp : p->stages) {
      const double core_s = (rp.fwd_flops + rp.bwd_flops + rp.recompute_flops) / core_rate;
      work += core_s * M;
      sum_slot += core_s / threads;
      max_slot = std::max(max_slot, core_s / threads);
    }
    const double pipeline = p->time.compute + p->time.bubble;
    const double textbook = sum_slot + (M - 1) * max_slot;
    if (cores >= 4) {
      EXPECT_NEAR(pipeline, textbook, 1e-9 * textbook) << cores << " cores";
    } else if (cores == 1) {
      EXPECT_NEAR(pipeline, work, 1e-9 * work) << "one core";
    } else {
      EXPECT_GE(pipeline, work / cores * (1 - 1e-9)) << cores << " cores";
      EXPECT_LE(pipeline, textbook * 4.0 / cores * (1 + 1e-9)) << cores << " cores: every rank runs at cores / 4 at least";
      EXPECT_GT(p->time.bubble, 0) << "4 stages on 2 cores leave cores idle while the pipeline fills";
    }
  }
}

// A CPU node's efficiencies are measured: the config's forward and backward, the LM head's
// cross-entropy and AdamW, timed here, give fractions in (0, 1] and a positive rate; with more
// ranks than cores, copies run at once on threads and the sharing kept is in (0, 1]; a config
// too large to time here is declined with the reason. plan_layouts uses the measurement of each
// layout's micro-batch: compute time scales with 1 / mfu.
TEST(Plan, CpuCalibrationMeasuresOrDeclines) {
  auto hw = hardware_load("cpu", nullptr);
  ASSERT_TRUE(hw.ok()) << hw.status();
  const RunConfig tiny = load("tiny.textproto");
  for (int threads : {1, 2}) {
    const CpuCalibration c = calibrate_cpu_mfu(tiny, *hw, threads);
    EXPECT_TRUE(c.why.empty()) << c.why;
    EXPECT_GT(c.mfu, 0);
    EXPECT_LE(c.mfu, 1);
    EXPECT_GT(c.head_mfu, 0);
    EXPECT_LE(c.head_mfu, 1);
    EXPECT_GT(c.optimizer_gbs, 0);
    EXPECT_GT(c.seconds, 0);
  }
  // More ranks than cores: copies run at once and the sharing they keep scales the efficiencies.
  const int cores = hw->spec.cores_per_node();
  const CpuCalibration alone = calibrate_cpu_mfu(tiny, *hw, 1, 1), shared = calibrate_cpu_mfu(tiny, *hw, 1, 2 * cores);
  ASSERT_TRUE(shared.why.empty()) << shared.why;
  EXPECT_EQ(alone.sharing, 1);
  EXPECT_GT(shared.sharing, 0);
  EXPECT_LE(shared.sharing, 1);
  EXPECT_GT(shared.mfu, 0);
  const CpuCalibration big = calibrate_cpu_mfu(load("paper/moe-large-cartesian.textproto"), *hw, 2);
  EXPECT_EQ(big.mfu, 0);
  EXPECT_NE(big.why.find("too large to time here"), std::string::npos) << big.why;

  PlanOptions opt;
  opt.gpus = 1;
  auto plain = plan_layouts(tiny, *hw, opt);
  CpuCalibration quarter;
  quarter.mfu = quarter.head_mfu = hw->spec.mfu() / 4;
  quarter.optimizer_gbs = hw->spec.memory_gbs();
  opt.calibration[tiny.train().micro_batch_size()] = quarter;
  auto slow = plan_layouts(tiny, *hw, opt);
  ASSERT_TRUE(plain.ok() && slow.ok());
  EXPECT_NEAR((*slow)[0].time.compute, 4 * (*plain)[0].time.compute, 1e-9 * (*slow)[0].time.compute);
}

// Expert-parallel routing imbalance: the calibration reads the config's first training
// micro-batches and sums, over the MoE sub-layers, the routed pairs of the busiest of ep expert
// slices against the mean. On data of one repeated token every position has the same hidden
// state, so with top_k 1 every pair of a sub-layer goes to one expert: the busiest slice holds
// them all, ep times the mean, exactly. Without readable data it routes random tokens.
TEST(Plan, CpuCalibrationMeasuresTheRoutingImbalance) {
  auto hw = hardware_load("cpu", nullptr);
  ASSERT_TRUE(hw.ok()) << hw.status();
  data::testing::ScratchDir dir("plan-routing");
  data::testing::write_documents(dir.file("same"), std::vector<std::vector<int32_t>>(64, std::vector<int32_t>(40, 7)));
  const RunConfig same = load("tiny.textproto", {"data.prefix=" + dir.file("same"), "data.tokenizer=", "data.split=1,0,0",
                                                  "model.moe.top_k=1"});
  const CpuCalibration one_expert = calibrate_cpu_mfu(same, *hw, 1, 4);  // tiny: 4 experts per set
  ASSERT_TRUE(one_expert.why.empty()) << one_expert.why;
  EXPECT_EQ(one_expert.routing_source, "the config's first training micro-batches");
  ASSERT_EQ(one_expert.ep_imbalance.size(), 2u);  // ep 2 and 4 divide the 4 experts, 3 does not
  EXPECT_DOUBLE_EQ(one_expert.ep_imbalance.at(2), 2.0);
  EXPECT_DOUBLE_EQ(one_expert.ep_imbalance.at(4), 4.0);

  const RunConfig tiny = load("tiny.textproto", {"data.prefix=" + dir.file("missing")});
  const CpuCalibration random = calibrate_cpu_mfu(tiny, *hw, 1, 2);
  EXPECT_NE(random.routing_source.find("random tokens"), std::string::npos) << random.routing_source;
  ASSERT_EQ(random.ep_imbalance.count(2), 1u);
  EXPECT_GE(random.ep_imbalance.at(2), 1.0);
  EXPECT_LT(random.ep_imbalance.at(2), 2.0);
  EXPECT_TRUE(calibrate_cpu_mfu(tiny, *hw, 1, 1).ep_imbalance.empty());  // one rank: no ep layout
}

// The busiest ep rank's extra expert work is on the critical path: (imbalance - 1) times the
// routed experts' forward and backward FLOPs (3x the forward) per micro-batch, at the rank's
// rate; layouts without expert parallelism ignore it. plan_layouts takes it from the
// calibration of the layout's micro-batch, or from PlanOptions::expert_imbalance.
TEST(Plan, ExpertImbalanceAddsTheBusiestRanksExtraWork) {
  auto hw = hardware_load("h100", nullptr);
  ASSERT_TRUE(hw.ok()) << hw.status();
  const RunConfig ep2 = load("tiny.textproto", {"parallel.dp=2", "parallel.ep=2", "train.grad_accum=3"});
  auto balanced = plan_layout(ep2, *hw, 8), skewed = plan_layout(ep2, *hw, 8, 0, 1.5);
  ASSERT_TRUE(balanced.ok() && skewed.ok());
  // tiny: one MoE layer (A and B), top-2 of sub-experts of hidden 64, d 64, 4 x 32 tokens.
  const RankPlan& r = skewed->stages[0];
  EXPECT_DOUBLE_EQ(r.expert_fwd_flops, 2.0 * 2 * (4 * 32) * 2 * 3 * 64 * 64);
  EXPECT_EQ(balanced->time.imbalance, 0);
  EXPECT_EQ(skewed->expert_imbalance, 1.5);
  const double rate = hw->peak_flops(DType::kF32) * hw->spec.mfu();
  EXPECT_NEAR(skewed->time.imbalance, 3 * 0.5 * 3 * r.expert_fwd_flops / rate, 1e-9 * skewed->time.imbalance);
  EXPECT_NEAR(skewed->time.total - balanced->time.total, skewed->time.imbalance, 1e-9 * skewed->time.total);
  auto dense_dp = plan_layout(load("tiny.textproto", {"parallel.dp=2"}), *hw, 8, 0, 1.5);
  ASSERT_TRUE(dense_dp.ok());
  EXPECT_EQ(dense_dp->expert_imbalance, 1);
  EXPECT_EQ(dense_dp->time.imbalance, 0);

  PlanOptions opt;
  opt.gpus = 2;
  opt.expert_imbalance = 1.25;
  auto all = plan_layouts(load("tiny.textproto"), *hw, opt);
  ASSERT_TRUE(all.ok()) << all.status();
  int with_ep = 0;
  for (const LayoutPlan& p : *all) {
    EXPECT_EQ(p.expert_imbalance, p.layout.ep > 1 ? 1.25 : 1.0);
    with_ep += p.layout.ep > 1;
  }
  EXPECT_GT(with_ep, 0);
}

TEST(Plan, HardwareDescriptionsAreCheckedWithTheFieldNamed) {
  for (const std::string& name : hardware_names()) {
    if (name == "cpu") continue;
    auto hw = hardware_load(name, nullptr);
    ASSERT_TRUE(hw.ok()) << name << ": " << hw.status();
    EXPECT_EQ(hw->spec.name(), name);
    EXPECT_GT(hw->peak_flops(DType::kBF16), hw->peak_flops(DType::kF32));
  }
  auto bad = hardware_parse("name: \"x\" peak_tflops_bf16: 1 peak_tflops_f32: 1 memory_gib: 8 memory_gbs: 100 "
                            "intra_node_gbs: -3 inter_node_gbs: 1",
                            "x.textproto");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("x.textproto: intra_node_gbs = -3"), std::string::npos) << bad.status();
  bad = hardware_parse("name: \"x\" peak_tflop: 1", "y.textproto");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("y.textproto:1:"), std::string::npos) << bad.status();
  bad = hardware_parse("name: \"x\" peak_tflops_bf16: 1 peak_tflops_f32: 1 memory_gib: 8 memory_gbs: 100 "
                       "intra_node_gbs: 3 inter_node_gbs: 1 mfu: 1.5",
                       "z");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("mfu = 1.5"), std::string::npos) << bad.status();
  EXPECT_TRUE(absl::IsNotFound(hardware_load("/no/such/file.textproto", nullptr).status()));
}

}  // namespace
}  // namespace cmoe
