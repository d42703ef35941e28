// timed_communicator.cpp — the timing wrapper (see timed_communicator.h).
#include "parallel/timed_communicator.h"

#include <chrono>

namespace cmoe::parallel {

namespace {

class Timer {
 public:
  explicit Timer(CommWaitClock& clock) : clock_(clock), t0_(std::chrono::steady_clock::now()) {}
  ~Timer() {
    clock_.add_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0_).count());
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

 private:
  CommWaitClock& clock_;
  std::chrono::steady_clock::time_point t0_;
};

class TimedWork : public CommWorkImpl {
 public:
  TimedWork(CommWork inner, std::shared_ptr<CommWaitClock> clock) : inner_(std::move(inner)), clock_(std::move(clock)) {}
  ~TimedWork() override {
    Timer t(*clock_);  // an unwaited operation is waited for here
    inner_ = CommWork();
  }
  absl::Status wait() override {
    Timer t(*clock_);
    return inner_.wait();
  }
  bool test() override { return inner_.done(); }

 private:
  CommWork inner_;
  std::shared_ptr<CommWaitClock> clock_;
};

class TimedCommunicator : public Communicator {
 public:
  TimedCommunicator(std::unique_ptr<Communicator> inner, std::shared_ptr<CommWaitClock> clock)
      : inner_(std::move(inner)), clock_(std::move(clock)) {}

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  int world_rank() const override { return inner_->world_rank(); }
  const std::string& name() const override { return inner_->name(); }
  Device device() const override { return inner_->device(); }
  double timeout_s() const override { return inner_->timeout_s(); }
  void set_timeout_s(double seconds) override { inner_->set_timeout_s(seconds); }

  absl::StatusOr<std::unique_ptr<Communicator>> split(int color, int key, const std::string& name) override {
    Timer t(*clock_);
    CMOE_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> c, inner_->split(color, key, name));
    return make_timed_communicator(std::move(c), clock_);
  }

  absl::StatusOr<CommWork> all_reduce_async(const Tensor& buf, ReduceOp op) override {
    return timed([&] { return inner_->all_reduce_async(buf, op); });
  }
  absl::StatusOr<CommWork> reduce_scatter_async(const Tensor& out, const Tensor& in, ReduceOp op) override {
    return timed([&] { return inner_->reduce_scatter_async(out, in, op); });
  }
  absl::StatusOr<CommWork> all_gather_async(const Tensor& out, const Tensor& in) override {
    return timed([&] { return inner_->all_gather_async(out, in); });
  }
  absl::StatusOr<CommWork> all_to_all_async(const Tensor& out, const Tensor& in) override {
    return timed([&] { return inner_->all_to_all_async(out, in); });
  }
  absl::StatusOr<CommWork> all_to_all_v_async(const Tensor& out, std::span<const int64_t> recv_rows, const Tensor& in,
                                              std::span<const int64_t> send_rows) override {
    return timed([&] { return inner_->all_to_all_v_async(out, recv_rows, in, send_rows); });
  }
  absl::StatusOr<CommWork> broadcast_async(const Tensor& buf, int root) override {
    return timed([&] { return inner_->broadcast_async(buf, root); });
  }
  absl::StatusOr<CommWork> batch_p2p_async(std::span<const P2POp> ops) override {
    return timed([&] { return inner_->batch_p2p_async(ops); });
  }
  absl::StatusOr<CommWork> barrier_async() override {
    return timed([&] { return inner_->barrier_async(); });
  }

 private:
  template <typename F>
  absl::StatusOr<CommWork> timed(F post) {
    absl::StatusOr<CommWork> w = [&] {
      Timer t(*clock_);
      return post();
    }();
    if (!w.ok()) return w.status();
    return CommWork(std::make_unique<TimedWork>(std::move(*w), clock_));
  }

  std::unique_ptr<Communicator> inner_;
  std::shared_ptr<CommWaitClock> clock_;
};

}  // namespace

std::unique_ptr<Communicator> make_timed_communicator(std::unique_ptr<Communicator> inner,
                                                      std::shared_ptr<CommWaitClock> clock) {
  CMOE_CHECK(inner != nullptr && clock != nullptr, "make_timed_communicator: null communicator or clock");
  return std::make_unique<TimedCommunicator>(std::move(inner), std::move(clock));
}

}  // namespace cmoe::parallel
