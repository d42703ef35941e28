// tensorboard.cpp — TFRecord framing and the event file writer (see tensorboard.h).
#include "moe/train/tensorboard.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "checkpoint/crc32c.h"
#include "core/check.h"

namespace cmoe {

namespace {

constexpr uint32_t kMaskDelta = 0xa282ead8u;

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t tfrecord_masked_crc(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + kMaskDelta;
}

std::string tfrecord_frame(const std::string& data) {
  std::string out;
  out.reserve(data.size() + 16);
  put_le(out, data.size(), 8);
  put_le(out, tfrecord_masked_crc(out.data(), 8), 4);
  out += data;
  put_le(out, tfrecord_masked_crc(data.data(), data.size()), 4);
  return out;
}

absl::StatusOr<std::unique_ptr<TensorBoardWriter>> TensorBoardWriter::open(const std::string& dir) {
  char host[256] = "localhost";
  if (gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "localhost");
  host[sizeof(host) - 1] = '\0';
  std::unique_ptr<TensorBoardWriter> w(new TensorBoardWriter());
  w->path_ = absl::StrFormat("%s/events.out.tfevents.%010d.%s.%d", dir, static_cast<int64_t>(now_s()), host,
                             static_cast<int>(getpid()));
  w->f_ = std::fopen(w->path_.c_str(), "wb");
  if (w->f_ == nullptr) {
    return absl::InternalError(absl::StrCat("tensorboard: cannot create ", w->path_, ": ", std::strerror(errno)));
  }
  tensorboard::Event e;
  e.set_wall_time(now_s());
  e.set_file_version("brain.Event:2");
  CMOE_RETURN_IF_ERROR(w->append(e));
  CMOE_RETURN_IF_ERROR(w->flush());
  return w;
}

TensorBoardWriter::~TensorBoardWriter() {
  if (f_ != nullptr) std::fclose(f_);
}

absl::Status TensorBoardWriter::append(const tensorboard::Event& e) {
  const std::string rec = tfrecord_frame(e.SerializeAsString());
  if (std::fwrite(rec.data(), 1, rec.size(), f_) != rec.size()) {
    return absl::InternalError(absl::StrCat("tensorboard: cannot write ", path_, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status TensorBoardWriter::write(int64_t step, const tensorboard::Summary& summary) {
  tensorboard::Event e;
  e.set_wall_time(now_s());
  e.set_step(step);
  *e.mutable_summary() = summary;
  return append(e);
}

absl::Status TensorBoardWriter::flush() {
  if (std::fflush(f_) != 0) {
    return absl::InternalError(absl::StrCat("tensorboard: cannot write ", path_, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

void summary_add_scalar(tensorboard::Summary* s, const std::string& tag, double value) {
  auto* v = s->add_value();
  v->set_tag(tag);
  v->set_simple_value(static_cast<float>(value));
}

void summary_add_index_histogram(tensorboard::Summary* s, const std::string& tag, const std::vector<int64_t>& counts) {
  auto* v = s->add_value();
  v->set_tag(tag);
  tensorboard::HistogramProto* h = v->mutable_histo();
  double num = 0, sum = 0, sq = 0;
  int64_t lo = -1, hi = -1;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double c = static_cast<double>(counts[i]), x = static_cast<double>(i);
    num += c;
    sum += c * x;
    sq += c * x * x;
    if (counts[i] > 0) {
      if (lo < 0) lo = static_cast<int64_t>(i);
      hi = static_cast<int64_t>(i);
    }
    h->add_bucket_limit(x + 0.5);
    h->add_bucket(c);
  }
  h->set_min(lo < 0 ? 0.0 : static_cast<double>(lo));
  h->set_max(hi < 0 ? 0.0 : static_cast<double>(hi));
  h->set_num(num);
  h->set_sum(sum);
  h->set_sum_squares(sq);
}

void summary_add_png(tensorboard::Summary* s, const std::string& tag, const std::string& png, int width, int height) {
  auto* v = s->add_value();
  v->set_tag(tag);
  tensorboard::Summary::Image* im = v->mutable_image();
  im->set_height(height);
  im->set_width(width);
  im->set_colorspace(3);
  im->set_encoded_image_string(png);
}

}  // namespace cmoe
