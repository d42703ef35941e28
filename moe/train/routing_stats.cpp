// routing_stats.cpp — interval routing statistics and the stages' gather (see routing_stats.h).
#include "moe/train/routing_stats.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "moe/train/metrics.h"
#include "parallel/staging.h"

namespace cmoe {

namespace {

json::Value int_array(const int64_t* v, int64_t n) {
  json::Value a = json::Value::array();
  for (int64_t i = 0; i < n; ++i) a.push_back(json::Value::integer(v[i]));
  return a;
}

json::Value router_json(const RouterReport& r, bool with_aux) {
  json::Value o = json::Value::object();
  o.set("counts", int_array(r.counts.data(), static_cast<int64_t>(r.counts.size())));
  o.set("pairs", json::Value::integer(r.pairs));
  o.set("dropped", json::Value::integer(r.dropped));
  if (with_aux) o.set("aux", json::Value::formatted(r.aux, "%.17g"));
  return o;
}

json::Value routers_json(const std::vector<RouterReport>& routers, bool with_aux) {
  json::Value o = json::Value::object();
  for (const RouterReport& r : routers) o.set(r.name, router_json(r, with_aux));
  return o;
}

// Reads back what routers_json / routing_interval_to_json wrote (our own bytes from a peer
// rank: a malformed one is a bug, hence CMOE_CHECK).
const json::Value& at(const json::Value& o, const char* key) {
  const json::Value* v = o.find(key);
  CMOE_CHECK(v != nullptr, "routing stats: record without '", key, "'");
  return *v;
}

std::vector<int64_t> ints_of(const json::Value& a) {
  std::vector<int64_t> out;
  for (const json::Value& v : a.as_array()) out.push_back(v.as_int());
  return out;
}

std::vector<RouterReport> routers_from_json(const json::Value& o) {
  std::vector<RouterReport> out;
  for (const json::Member& m : o.as_object()) {
    RouterReport r;
    r.name = m.key;
    r.counts = ints_of(at(m.value, "counts"));
    r.pairs = at(m.value, "pairs").as_int();
    r.dropped = at(m.value, "dropped").as_int();
    if (const json::Value* a = m.value.find("aux")) r.aux = a->as_double();
    out.push_back(std::move(r));
  }
  return out;
}

RoutingInterval interval_from_json(const json::Value& o) {
  RoutingInterval r;
  r.first_step = at(o, "first_step").as_int();
  r.last_step = at(o, "last_step").as_int();
  r.routers = routers_from_json(at(o, "routers"));
  for (const json::Member& m : at(o, "co_usage").as_object()) {
    CoUsage c;
    c.layer = m.key;
    c.router_a = at(m.value, "a").as_string();
    c.router_b = at(m.value, "b").as_string();
    for (const json::Value& row : at(m.value, "counts").as_array()) {
      std::vector<int64_t> v = ints_of(row);
      c.experts_b = static_cast<int64_t>(v.size());
      c.counts.insert(c.counts.end(), v.begin(), v.end());
      ++c.experts_a;
    }
    r.co_usage.push_back(std::move(c));
  }
  return r;
}

// Every rank's bytes on every rank of `g` (lengths first, then the padded bytes).
absl::StatusOr<std::vector<std::string>> all_gather_bytes(parallel::Communicator& g, const std::string& mine) {
  const int n = g.size();
  Tensor len = Tensor::empty({1}, DType::kI64), lens = Tensor::empty({n}, DType::kI64);
  len.data<int64_t>()[0] = static_cast<int64_t>(mine.size());
  CMOE_RETURN_IF_ERROR(parallel::all_gather_host(g, lens, len));  // g may move device tensors
  int64_t most = 1;
  for (int r = 0; r < n; ++r) most = std::max(most, lens.data<int64_t>()[r]);
  const int64_t words = (most + 3) / 4;
  Tensor buf = Tensor::zeros({words}, DType::kI32), all = Tensor::empty({n * words}, DType::kI32);
  std::memcpy(buf.raw_data(), mine.data(), mine.size());
  CMOE_RETURN_IF_ERROR(parallel::all_gather_host(g, all, buf));
  std::vector<std::string> out(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) {
    out[r].assign(static_cast<const char*>(all.raw_data()) + static_cast<size_t>(r * words) * 4, lens.data<int64_t>()[r]);
  }
  return out;
}

}  // namespace

json::Value router_reports_to_json(const std::vector<RouterReport>& routers) { return routers_json(routers, false); }

json::Value routing_interval_to_json(const RoutingInterval& r) {
  json::Value o = json::Value::object();
  o.set("first_step", json::Value::integer(r.first_step));
  o.set("last_step", json::Value::integer(r.last_step));
  o.set("routers", routers_json(r.routers, false));
  json::Value co = json::Value::object();
  for (const CoUsage& c : r.co_usage) {
    json::Value m = json::Value::object();
    m.set("a", json::Value::string(c.router_a));
    m.set("b", json::Value::string(c.router_b));
    json::Value rows = json::Value::array();
    for (int64_t a = 0; a < c.experts_a; ++a) rows.push_back(int_array(c.counts.data() + a * c.experts_b, c.experts_b));
    m.set("counts", std::move(rows));
    co.set(c.layer, std::move(m));
  }
  o.set("co_usage", std::move(co));
  return o;
}

void merge_co_usage(std::vector<CoUsage>& into, const std::vector<CoUsage>& add) {
  for (const CoUsage& c : add) {
    CoUsage* m = nullptr;
    for (CoUsage& o : into)
      if (o.layer == c.layer) m = &o;
    if (m == nullptr) {
      into.push_back(c);
      continue;
    }
    CMOE_CHECK(m->counts.size() == c.counts.size(), "co-usage of ", c.layer, ": ", m->counts.size(), " vs ",
               c.counts.size(), " cells");
    for (size_t i = 0; i < c.counts.size(); ++i) m->counts[i] += c.counts[i];
  }
}

RoutingStats::RoutingStats(int64_t interval) : interval_(interval) {
  CMOE_CHECK(interval >= 1, "routing stats interval ", interval);
}

void RoutingStats::add(int64_t step, const std::vector<RouterReport>& routers, const std::vector<CoUsage>& co_usage) {
  if (!started_) {
    cur_ = RoutingInterval();
    cur_.first_step = step - 1;
    started_ = true;
  }
  cur_.last_step = step;
  std::vector<RouterReport> all = cur_.routers;
  all.insert(all.end(), routers.begin(), routers.end());
  cur_.routers = merge_reports(all);
  merge_co_usage(cur_.co_usage, co_usage);
}

absl::StatusOr<RoutingInterval> RoutingStats::take(parallel::Communicator* dp) {
  RoutingInterval out = std::move(cur_);
  cur_ = RoutingInterval();
  started_ = false;
  for (RouterReport& r : out.routers) r.aux = 0;  // a sum of per-step terms means nothing here
  if (dp != nullptr && dp->size() > 1 && !out.co_usage.empty()) {
    int64_t n = 0;
    for (const CoUsage& c : out.co_usage) n += static_cast<int64_t>(c.counts.size());
    Tensor t = Tensor::empty({n}, DType::kI64);
    int64_t at = 0;
    for (const CoUsage& c : out.co_usage)
      for (int64_t v : c.counts) t.data<int64_t>()[at++] = v;
    CMOE_RETURN_IF_ERROR(parallel::all_reduce_host(*dp, t));  // dp may move device tensors
    at = 0;
    for (CoUsage& c : out.co_usage)
      for (int64_t& v : c.counts) v = t.data<int64_t>()[at++];
  }
  return out;
}

absl::Status gather_stage_routing(parallel::Communicator* pp, std::vector<RouterReport>& routers,
                                  std::optional<RoutingInterval>* interval) {
  if (pp == nullptr || pp->size() == 1) return absl::OkStatus();
  json::Value mine = json::Value::object();
  mine.set("routers", routers_json(routers, true));
  if (interval != nullptr && interval->has_value()) mine.set("interval", routing_interval_to_json(**interval));
  CMOE_ASSIGN_OR_RETURN(std::vector<std::string> all, all_gather_bytes(*pp, json::serialize(mine)));
  if (pp->rank() != 0) return absl::OkStatus();
  for (int r = 1; r < pp->size(); ++r) {
    auto v = json::parse(all[r]);
    CMOE_CHECK(v.ok(), "routing stats from pipeline rank ", r, ": ", v.status().message());
    std::vector<RouterReport> theirs = routers_from_json(at(*v, "routers"));
    routers.insert(routers.end(), theirs.begin(), theirs.end());
    if (interval != nullptr && interval->has_value()) {
      RoutingInterval ti = interval_from_json(at(*v, "interval"));
      auto& mine_iv = **interval;
      mine_iv.routers.insert(mine_iv.routers.end(), ti.routers.begin(), ti.routers.end());
      mine_iv.co_usage.insert(mine_iv.co_usage.end(), ti.co_usage.begin(), ti.co_usage.end());
    }
  }
  return absl::OkStatus();
}

}  // namespace cmoe
