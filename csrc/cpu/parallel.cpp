#include "modelguard_fast/parallel.h"

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>

namespace mgf {
namespace {

int threads_from_environment() {
  for (const char* name : {"MGF_NUM_THREADS", "OMP_NUM_THREADS"}) {
    if (const char* value = std::getenv(name)) {
      const int n = std::atoi(value);
      if (n > 0) return n;
    }
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

struct Job {
  const std::function<void(int64_t, int64_t)>* body;
  int64_t n;
  int64_t chunk;
  std::atomic<int64_t> next{0};

  void drain() {
    for (;;) {
      const int64_t begin = next.fetch_add(chunk, std::memory_order_relaxed);
      if (begin >= n) return;
      (*body)(begin, std::min(n, begin + chunk));
    }
  }
};

class ThreadPool {
 public:
  explicit ThreadPool(int threads) : threads_(threads), pid_(getpid()) {
    for (int i = 1; i < threads_; ++i) std::thread([this] { work(); }).detach();
  }

  int threads() const { return threads_; }

  void run(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& body) {
    std::unique_lock<std::mutex> one_job(run_mutex_, std::try_to_lock);
    if (!one_job.owns_lock() || threads_ <= 1 || getpid() != pid_) {
      body(0, n);
      return;
    }
    Job job{&body, n, chunk};
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      ++generation_;
    }
    wake_.notify_all();
    std::exception_ptr error;
    try {
      job.drain();
    } catch (...) {
      error = std::current_exception();
      job.next.store(n);  // hand out nothing more
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      job_ = nullptr;  // no worker joins after this
      idle_.wait(lock, [this] { return active_ == 0; });
    }
    if (error) std::rethrow_exception(error);
  }

 private:
  void work() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return job_ != nullptr && generation_ != seen; });
      seen = generation_;
      Job* job = job_;
      ++active_;
      lock.unlock();
      job->drain();  // kernel bodies do not throw: they only compute
      lock.lock();
      if (--active_ == 0) idle_.notify_all();
    }
  }

  const int threads_;
  const pid_t pid_;
  std::mutex run_mutex_;  // one loop at a time; concurrent callers run serially
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  Job* job_ = nullptr;
  uint64_t generation_ = 0;
  int active_ = 0;
};

ThreadPool& pool() {
  // Never destroyed: detached workers must not outlive their pool at exit.
  static ThreadPool* instance = new ThreadPool(threads_from_environment());
  return *instance;
}

}  // namespace

std::atomic<int> thread_limit{1 << 30};

int max_threads() { return std::min(pool().threads(), thread_limit.load(std::memory_order_relaxed)); }

void set_thread_limit(int threads) { thread_limit.store(std::max(1, threads), std::memory_order_relaxed); }

void run_chunks(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& body) {
  pool().run(n, chunk, body);
}

}  // namespace mgf
