#include "scheduler/waiting_publisher.h"

#include <spdlog/spdlog.h>

#include "tasks/protocol.h"

namespace drover::scheduler {

WaitingPublisher::WaitingPublisher(const LeaderContext& ctx, Options options, Count count,
                                   std::function<int64_t()> wall)
    : ctx_(ctx), options_(options), count_(std::move(count)), wall_(std::move(wall)) {}

void WaitingPublisher::start() {
  if (started_) return;
  started_ = true;
  tick();
}

void WaitingPublisher::tick() {
  if (!ctx_.active()) return;
  if (!inflight_) {
    auto count = count_();
    if (count && (!published_ || count->waiting != published_->waiting ||
                  count->delayed != published_->delayed || count->held != published_->held)) {
      publish(*count);
    }
  }
  ctx_.later(options_.interval, [this] { tick(); });
}

void WaitingPublisher::publish(tasks::WaitingCount count) {
  count.at = wall_();
  auto builder = tasks::v2::Builder::fenced(ctx_.layout, ctx_.epoch);
  builder.publishWaiting(count);
  auto multi = std::move(builder).finish();
  inflight_ = true;
  ctx_.coord.multi(std::move(multi.ops))
      .then([this, post = ctx_.post, count, decoder = std::move(multi.decoder)](
                const coord::Result<std::vector<coord::OpResult>>& r) {
        post([this, count, r, decoder] {
          inflight_ = false;
          if (!ctx_.active()) return;
          if (r) {
            published_ = count;
            ++writes_;
            return;
          }
          const coord::Error& e = r.error();
          if (ctx_.fencedBy(e, decoder.failed(e))) return;
          // Anything else (a lost connection, no /pending yet): the next tick writes again.
          spdlog::debug("scheduler: waiting count not published: {}", e.toString());
        });
      });
}

}  // namespace drover::scheduler
