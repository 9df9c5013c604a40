#include "coord/fault_injecting.h"

namespace drover::coord {

void FaultInjectingCoordination::ambiguousNext(std::string path_prefix, int count) {
  std::lock_guard lock(mu_);
  prefix_ = std::move(path_prefix);
  armed_ = count;
}

bool FaultInjectingCoordination::take(const std::string& path) {
  std::lock_guard lock(mu_);
  if (armed_ <= 0 || path.rfind(prefix_, 0) != 0) return false;
  --armed_;
  return true;
}

template <class T>
Future<T> FaultInjectingCoordination::lose(Future<T> real) {
  Promise<T> out;
  real.then([this, out](const Result<T>&) {
    ++injected_;
    out.set(tl::unexpected(Error(Code::kConnectionLoss, "injected after the write completed")));
  });
  return out.future();
}

Future<std::string> FaultInjectingCoordination::create(CreateOp op) {
  bool inject = take(op.path);
  auto f = inner_.create(std::move(op));
  return inject ? lose(f) : f;
}

Future<void> FaultInjectingCoordination::remove(const std::string& path, int32_t version) {
  bool inject = take(path);
  auto f = inner_.remove(path, version);
  return inject ? lose(f) : f;
}

Future<Stat> FaultInjectingCoordination::set(const std::string& path, std::string data,
                                             int32_t version) {
  bool inject = take(path);
  auto f = inner_.set(path, std::move(data), version);
  return inject ? lose(f) : f;
}

Future<std::vector<OpResult>> FaultInjectingCoordination::multi(std::vector<Op> ops) {
  bool inject = false;
  for (const auto& op : ops) {
    const std::string& path =
        std::visit([](const auto& o) -> const std::string& { return o.path; }, op);
    if (take(path)) {
      inject = true;
      break;
    }
  }
  auto f = inner_.multi(std::move(ops));
  return inject ? lose(f) : f;
}

}  // namespace drover::coord
