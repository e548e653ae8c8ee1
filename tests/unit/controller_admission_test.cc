// controller/admission.h and the task limits of system_limits.h: room for a
// VM is reserved in one step, so concurrent callers never overshoot a limit,
// and no two live VMs hold one uid.
#include "controller/admission.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "controller/system_limits.h"

namespace ember::controller {
namespace {

Capacity roomy() {
  Capacity c;
  c.max_vms = 1000;
  c.mem_bytes = int64_t{1} << 40;
  c.tasks = 1 << 20;
  c.tasks_limit = "kernel.pid_max";
  return c;
}

TEST(Admission, EachLimitRefusesWithItsName) {
  const VmCost vm{4 << 20, 3};
  struct Case {
    const char* limit;
    Capacity cap;
  };
  std::vector<Case> cases;
  cases.push_back({"limits.max_vms", roomy()});
  cases.back().cap.max_vms = 2;
  cases.push_back({"memory budget", roomy()});
  cases.back().cap.mem_bytes = 2 * (vm.mem_bytes + (512 << 10));
  cases.back().cap.host_overhead_bytes = 512 << 10;
  cases.push_back({"kernel.pid_max", roomy()});
  cases.back().cap.tasks = 7;
  for (const Case& c : cases) {
    Admission a;
    a.set_capacity(c.cap);
    std::string why;
    auto s1 = a.reserve(vm, &why), s2 = a.reserve(vm, &why);
    ASSERT_TRUE(s1 && s2) << c.limit << ": " << why;
    EXPECT_FALSE(a.fits(vm)) << c.limit;
    EXPECT_FALSE(a.reserve(vm, &why)) << c.limit;
    EXPECT_NE(why.find(c.limit), std::string::npos) << why;
    s1->release();
    EXPECT_TRUE(a.fits(vm)) << c.limit << ": a released slot is room again";
    EXPECT_EQ(a.most_vms(vm), 2u) << c.limit;
  }
}

TEST(Admission, ReleaseIsOnceWhateverCallsIt) {
  Admission a;
  a.set_capacity(roomy());
  std::string why;
  {
    auto s = a.reserve({100, 3}, &why);
    ASSERT_TRUE(s);
    a.update_memory(*s, 250);
    EXPECT_EQ(a.usage().mem_bytes, 250);
    Admission::Slot moved = std::move(*s);
    EXPECT_EQ(a.usage().vms, 1u) << "moving a slot keeps one reservation";
    moved.release();
    moved.release();
    EXPECT_FALSE(moved.held());
    a.update_memory(moved, 999);  // after release: no effect
  }
  EXPECT_EQ(a.usage().vms, 0u);
  EXPECT_EQ(a.usage().mem_bytes, 0);
  EXPECT_EQ(a.usage().tasks, 0);
}

TEST(Admission, ConcurrentReservationsNeverOvershoot) {
  Admission a;
  Capacity c = roomy();
  c.max_vms = 50;
  a.set_capacity(c);
  std::atomic<int> live{0}, most{0}, granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; t++)
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; i++) {
        auto s = a.reserve({1, 1}, nullptr);
        if (!s) continue;
        granted++;
        const int now = ++live;
        int m = most.load();
        while (now > m && !most.compare_exchange_weak(m, now)) {
        }
        --live;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_LE(most.load(), 50);
  EXPECT_GT(granted.load(), 0);
  EXPECT_EQ(a.usage().vms, 0u);
}

TEST(Admission, NoTwoLiveVmsShareAUid) {
  Admission a(420000, 4);
  a.set_capacity(roomy());
  std::string why;
  std::vector<Admission::Slot> live;
  std::set<uint32_t> uids;
  for (int i = 0; i < 4; i++) {
    auto s = a.reserve({1, 1}, &why);
    ASSERT_TRUE(s) << why;
    EXPECT_GE(s->uid(), 420000u);
    EXPECT_LT(s->uid(), 420004u);
    uids.insert(s->uid());
    live.push_back(std::move(*s));
  }
  EXPECT_EQ(uids.size(), 4u);
  EXPECT_FALSE(a.reserve({1, 1}, &why)) << "every uid is held";
  EXPECT_NE(why.find("jailer.uid_count"), std::string::npos) << why;
  const uint32_t freed = live[1].uid();
  live[1].release();
  auto again = a.reserve({1, 1}, &why);
  ASSERT_TRUE(again) << why;
  EXPECT_EQ(again->uid(), freed) << "the only free uid";
}

TEST(TaskLimits, TheTightestLimitLessOthersAndTheReserve) {
  const std::vector<TaskLimit> limits = {
      {"kernel.pid_max", 32768, 900},          // 900 tasks on the host, 300 of them ours
      {"kernel.threads-max", 200000, 900},
      {"pids.max of /sys/fs/cgroup/pids/x", 2000, 400},
  };
  std::string which;
  // pid_max: 32768 - 600 - 1024; pids.max: 2000 - 100 - min(1024, 500) = 1400.
  EXPECT_EQ(tasks_for_vms(limits, 300, 1024, &which), 1400);
  EXPECT_EQ(which, "pids.max of /sys/fs/cgroup/pids/x");
  EXPECT_EQ(tasks_for_vms({{"kernel.pid_max", 32768, 900}}, 300, 1024, &which), 32768 - 600 - 1024);
  EXPECT_EQ(tasks_for_vms({{"kernel.pid_max", 1000, 5000}}, 0, 0, &which), 0) << "never negative";
  EXPECT_EQ(tasks_for_vms({{"RLIMIT_NPROC", 400, 0}}, 50, 1024, &which), 300) << "uncounted: only ours are held";
}

TEST(TaskLimits, ThisHostHasAPidLimitWithItsTasksCounted) {
  const auto limits = read_task_limits(true);
  bool pid_max = false;
  for (const TaskLimit& l : limits) {
    EXPECT_GT(l.limit, 0) << l.name;
    if (l.name == "kernel.pid_max") {
      pid_max = true;
      EXPECT_GT(l.used, 1) << "at least this test's threads";
      EXPECT_LT(l.used, l.limit);
    }
  }
  EXPECT_TRUE(pid_max);
}

}  // namespace
}  // namespace ember::controller
