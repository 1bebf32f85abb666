// Memory limit discovery (report/mem_limit.cpp) on fake cgroup trees: a fake
// /proc/self/cgroup and mountinfo under a temporary directory, whose mount
// points name fake cgroup directories there with their memory.* files.
// Then once on the machine's own cgroup.
#include "report/mem_limit.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "os/os.h"

using namespace ebb;

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr const char* kV1Unlimited = "9223372036854771712\n";

class MemLimitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ebb_mem_limit_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    cgroup_file_ = root_ + "/cgroup";
    mountinfo_file_ = root_ + "/mountinfo";
    files_.proc_cgroup = cgroup_file_.c_str();
    files_.mountinfo = mountinfo_file_.c_str();
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  // Writes root_/rel (creating its directory).
  void write(const std::string& rel, const std::string& text) {
    const std::string path = root_ + "/" + rel;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << text;
  }
  void mkdir(const std::string& rel) { std::filesystem::create_directories(root_ + "/" + rel); }
  // A mountinfo line for a hierarchy mounted at root_/point.
  std::string v1_mount(const std::string& point, const std::string& super = "rw,memory",
                       const std::string& root = "/") {
    return "35 31 0:32 " + root + " " + root_ + "/" + point + " rw,relatime shared:5 - cgroup cgroup " + super + "\n";
  }
  std::string v2_mount(const std::string& point, const std::string& root = "/") {
    return "41 31 0:38 " + root + " " + root_ + "/" + point + " rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate\n";
  }
  // Some ordinary mounts around the ones of interest.
  static std::string other_mounts() {
    return "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
           "23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
           "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
           "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";
  }
  bool discover() { return discover_cgroup(files_, &l_); }
  std::string dir(const std::string& rel) const { return rel.empty() ? root_ : root_ + "/" + rel; }

  std::string root_, cgroup_file_, mountinfo_file_;
  CgroupFiles files_;
  CgroupLimit l_;
};

// ---- cgroup v2 -----------------------------------------------------------------

TEST_F(MemLimitTest, V2HighAtTheLeaf) {
  write("cgroup", "0::/a/b\n");
  write("mountinfo", other_mounts() + v2_mount("unified"));
  write("unified/a/b/memory.high", "104857600\n");
  write("unified/a/b/memory.max", "max\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.version, 2u);
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
  EXPECT_EQ(l_.source, LimitSource::kCgroup2High);
  EXPECT_EQ(std::string(l_.leaf), dir("unified/a/b"));
  EXPECT_EQ(l_.mount_len, dir("unified").size());
  EXPECT_EQ(std::string(l_.limit_dir), dir("unified/a/b"));
}

TEST_F(MemLimitTest, V2MaxWhenHighIsMax) {
  write("cgroup", "0::/a/b\n");
  write("mountinfo", v2_mount("unified"));
  write("unified/a/b/memory.high", "max\n");
  write("unified/a/b/memory.max", "209715200\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.limit_bytes, 200 * kMiB);
  EXPECT_EQ(l_.source, LimitSource::kCgroup2Max);
}

TEST_F(MemLimitTest, V2SmallerOfHighAndMax) {
  write("cgroup", "0::/a\n");
  write("mountinfo", v2_mount("unified"));
  write("unified/a/memory.high", "300000000\n");
  write("unified/a/memory.max", "200000000\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.limit_bytes, 200000000u);
  EXPECT_EQ(l_.source, LimitSource::kCgroup2Max);
}

TEST_F(MemLimitTest, V2ParentLimitBindsTheChild) {
  write("cgroup", "0::/a/b\n");
  write("mountinfo", v2_mount("unified"));
  write("unified/a/b/memory.high", "209715200\n");
  write("unified/a/b/memory.max", "max\n");
  write("unified/a/memory.high", "max\n");
  write("unified/a/memory.max", "104857600\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
  EXPECT_EQ(l_.source, LimitSource::kCgroup2Max);
  EXPECT_EQ(std::string(l_.limit_dir), dir("unified/a"));
  EXPECT_EQ(std::string(l_.leaf), dir("unified/a/b"));
}

TEST_F(MemLimitTest, V2ChildLimitWinsATie) {
  write("cgroup", "0::/a/b\n");
  write("mountinfo", v2_mount("unified"));
  write("unified/a/b/memory.high", "104857600\n");
  write("unified/a/memory.high", "104857600\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(std::string(l_.limit_dir), dir("unified/a/b"));
}

TEST_F(MemLimitTest, V2NoLimitAnywhere) {
  write("cgroup", "0::/a/b\n");
  write("mountinfo", v2_mount("unified"));
  write("unified/a/b/memory.high", "max\n");
  write("unified/a/b/memory.max", "max\n");
  write("unified/a/memory.high", "max\n");
  write("unified/a/memory.max", "max\n");
  mkdir("unified");  // the root has no memory.* files, as on a real system
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.version, 2u);
  EXPECT_EQ(l_.limit_bytes, 0u);
  EXPECT_EQ(l_.source, LimitSource::kNone);
  EXPECT_STREQ(l_.limit_dir, "");
}

TEST_F(MemLimitTest, V2LimitAtTheMountPointCounts) {
  write("cgroup", "0::/a\n");
  write("mountinfo", v2_mount("unified"));
  mkdir("unified/a");
  write("unified/memory.max", "104857600\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
  EXPECT_EQ(std::string(l_.limit_dir), dir("unified"));
}

TEST_F(MemLimitTest, V2ProcessAtTheRoot) {
  write("cgroup", "0::/\n");
  write("mountinfo", v2_mount("unified"));
  write("unified/memory.high", "104857600\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(std::string(l_.leaf), dir("unified"));
  EXPECT_EQ(l_.mount_len, dir("unified").size());
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
}

TEST_F(MemLimitTest, HugeValuesMeanNoLimit) {
  write("cgroup", "0::/a\n");
  write("mountinfo", v2_mount("unified"));
  write("unified/a/memory.high", "1152921504606846976\n");  // 2^60
  write("unified/a/memory.max", "99999999999999999999999999\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.limit_bytes, 0u);
}

// ---- cgroup v1 -----------------------------------------------------------------

TEST_F(MemLimitTest, V1SoftLimit) {
  write("cgroup", "5:cpu:/\n4:memory:/x/y\n0::/\n");
  write("mountinfo", other_mounts() + v1_mount("memory"));
  write("memory/x/y/memory.soft_limit_in_bytes", "104857600\n");
  write("memory/x/y/memory.limit_in_bytes", "209715200\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.version, 1u);
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
  EXPECT_EQ(l_.source, LimitSource::kCgroup1Soft);
  EXPECT_EQ(std::string(l_.leaf), dir("memory/x/y"));
  EXPECT_EQ(std::string(l_.limit_dir), dir("memory/x/y"));
}

TEST_F(MemLimitTest, V1HardWhenSoftUnlimited) {
  write("cgroup", "4:memory:/x/y\n");
  write("mountinfo", v1_mount("memory"));
  write("memory/x/y/memory.soft_limit_in_bytes", kV1Unlimited);
  write("memory/x/y/memory.limit_in_bytes", "209715200\n");
  write("memory/x/memory.soft_limit_in_bytes", kV1Unlimited);
  write("memory/x/memory.limit_in_bytes", kV1Unlimited);
  write("memory/memory.soft_limit_in_bytes", kV1Unlimited);
  write("memory/memory.limit_in_bytes", kV1Unlimited);
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.limit_bytes, 200 * kMiB);
  EXPECT_EQ(l_.source, LimitSource::kCgroup1Hard);
}

TEST_F(MemLimitTest, V1AllUnlimited) {
  write("cgroup", "4:memory:/x\n");
  write("mountinfo", v1_mount("memory"));
  write("memory/x/memory.soft_limit_in_bytes", kV1Unlimited);
  write("memory/x/memory.limit_in_bytes", kV1Unlimited);
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.version, 1u);
  EXPECT_EQ(l_.limit_bytes, 0u);
}

TEST_F(MemLimitTest, V1CoMountedControllers) {
  write("cgroup", "7:pids:/\n5:cpu,memory:/x\n1:name=systemd:/\n");
  write("mountinfo", other_mounts() + v1_mount("cpu,memory", "rw,cpu,memory"));
  write("cpu,memory/x/memory.limit_in_bytes", "104857600\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.version, 1u);
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
  EXPECT_EQ(std::string(l_.leaf), dir("cpu,memory/x"));
}

TEST_F(MemLimitTest, V1ControllerNamesAreWholeWords) {
  // "memory_x" is not the memory controller, in either file.
  write("cgroup", "4:memory_x:/x\n");
  write("mountinfo", v1_mount("memory", "rw,memory"));
  mkdir("memory/x");
  EXPECT_FALSE(discover());
  EXPECT_EQ(l_.version, 0u);
  // A memory line, but the only v1 mount's options say memory_x: not mounted.
  write("cgroup", "4:memory:/x\n0::/x\n");
  write("mountinfo", v1_mount("memory", "rw,memory_x") + v2_mount("unified"));
  mkdir("unified/x");
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.version, 2u);
}

// ---- hybrid --------------------------------------------------------------------

TEST_F(MemLimitTest, HybridPrefersV1) {
  write("cgroup", "4:memory:/x\n0::/u\n");
  write("mountinfo", v2_mount("unified") + v1_mount("memory"));
  write("memory/x/memory.limit_in_bytes", "104857600\n");
  write("unified/u/memory.max", "52428800\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.version, 1u);
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
  EXPECT_EQ(std::string(l_.leaf), dir("memory/x"));
}

TEST_F(MemLimitTest, HybridUnmountedV1FallsBackToV2) {
  write("cgroup", "4:memory:/x\n0::/u\n");
  write("mountinfo", other_mounts() + v2_mount("unified"));
  write("memory/x/memory.limit_in_bytes", "104857600\n");
  write("unified/u/memory.max", "52428800\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.version, 2u);
  EXPECT_EQ(l_.limit_bytes, 50 * kMiB);
  EXPECT_EQ(std::string(l_.leaf), dir("unified/u"));
}

TEST_F(MemLimitTest, V2LineWithoutACgroup2MountFails) {
  write("cgroup", "0::/u\n");
  write("mountinfo", other_mounts());
  mkdir("unified/u");
  EXPECT_FALSE(discover());
}

// ---- mount roots ---------------------------------------------------------------

TEST_F(MemLimitTest, BindMountRootIsStripped) {
  write("cgroup", "0::/kubepods/pod1/c1\n");
  write("mountinfo", v2_mount("cg", "/kubepods/pod1"));
  write("cg/c1/memory.max", "104857600\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(std::string(l_.leaf), dir("cg/c1"));
  EXPECT_EQ(l_.mount_len, dir("cg").size());
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
}

TEST_F(MemLimitTest, ProcessAtTheMountRoot) {
  write("cgroup", "4:memory:/kubepods/pod1\n");
  write("mountinfo", v1_mount("memory", "rw,memory", "/kubepods/pod1"));
  write("memory/memory.limit_in_bytes", "104857600\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(std::string(l_.leaf), dir("memory"));
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
}

TEST_F(MemLimitTest, PathOutsideTheMountRootIsTheMountPoint) {
  write("cgroup", "0::/other/c1\n");
  write("mountinfo", v2_mount("cg", "/kubepods/pod1"));
  write("cg/memory.max", "104857600\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(std::string(l_.leaf), dir("cg"));
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
}

TEST_F(MemLimitTest, PathAboveTheNamespaceRootIsTheMountPoint) {
  // In a cgroup namespace, a process outside the namespace's root: its
  // path must not lead out of the mount.
  write("cgroup", "0::/../sibling\n");
  write("mountinfo", v2_mount("cg/inner"));
  write("cg/sibling/memory.max", "1048576\n");
  write("cg/inner/memory.max", "104857600\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(std::string(l_.leaf), dir("cg/inner"));
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
  // ".." only as a whole component.
  write("cgroup", "0::/..x/y..\n");
  mkdir("cg/inner/..x/y..");
  ASSERT_TRUE(discover());
  EXPECT_EQ(std::string(l_.leaf), dir("cg/inner/..x/y.."));
}

TEST_F(MemLimitTest, RootPrefixMustEndAtAComponent) {
  // Root /kube is not a parent of /kubepods/c1.
  write("cgroup", "0::/kubepods/c1\n");
  write("mountinfo", v2_mount("cg", "/kube"));
  mkdir("cg");
  ASSERT_TRUE(discover());
  EXPECT_EQ(std::string(l_.leaf), dir("cg"));
}

TEST_F(MemLimitTest, MountWhoseRootHoldsThePathIsPreferred) {
  write("cgroup", "0::/kubepods/pod1/c1\n");
  write("mountinfo",
        v2_mount("elsewhere", "/system") + v2_mount("cg", "/kubepods") + v2_mount("cg2", "/kubepods/pod1"));
  mkdir("elsewhere");
  mkdir("cg/pod1/c1");
  mkdir("cg2/c1");
  ASSERT_TRUE(discover());
  EXPECT_EQ(std::string(l_.leaf), dir("cg2/c1"));
}

TEST_F(MemLimitTest, EscapedMountPoint) {
  write("cgroup", "0::/a\n");
  const std::string point = root_ + "/my\\040cg\\011x\\134y";
  write("mountinfo", "41 31 0:38 / " + point + " rw - cgroup2 cgroup2 rw\n");
  write("my cg\tx\\y/a/memory.max", "104857600\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(std::string(l_.leaf), dir("my cg\tx\\y/a"));
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
}

// ---- long and broken files -----------------------------------------------------

TEST_F(MemLimitTest, MountinfoLineLongerThanTheBufferIsSkipped) {
  write("cgroup", "0::/a\n");
  // A 5000-byte cgroup2 line first (a mount point that does not exist):
  // skipped whole, not read as lines of its own.
  const std::string long_line =
      "40 31 0:37 / " + root_ + "/bogus" + std::string(5000, 'z') + " rw - cgroup2 cgroup2 rw\n";
  write("mountinfo", other_mounts() + long_line + v2_mount("unified"));
  write("unified/a/memory.max", "104857600\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(std::string(l_.leaf), dir("unified/a"));
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
}

TEST_F(MemLimitTest, LongLineIsNotCutIntoLines) {
  // A tmpfs line whose bytes from 4095 on (past one buffer) read like a
  // cgroup2 mount of their own, at a wrong place: it must not be taken.
  write("cgroup", "0::/a\n");
  const std::string tail = "99 31 0:99 / " + dir("wrong") + " rw - cgroup2 cgroup2 rw";
  std::string head = "40 31 0:37 / /tmp/t rw - tmpfs tmpfs rw,x=";
  head += std::string(4095 - 1 - head.size(), 'z') + " ";
  ASSERT_EQ(head.size(), 4095u);
  write("mountinfo", head + tail + "\n" + v2_mount("unified"));
  mkdir("wrong/a");
  mkdir("unified/a");
  ASSERT_TRUE(discover());
  EXPECT_EQ(std::string(l_.leaf), dir("unified/a"));
}

TEST_F(MemLimitTest, VeryLongLineSpanningSeveralBuffers) {
  write("cgroup", "0::/a\n");
  write("mountinfo", std::string(20000, 'q') + "\n" + v2_mount("unified"));
  mkdir("unified/a");
  ASSERT_TRUE(discover());
  EXPECT_EQ(std::string(l_.leaf), dir("unified/a"));
}

TEST_F(MemLimitTest, LongLastLineWithoutNewlineIsSkipped) {
  write("cgroup", "0::/a\n");
  write("mountinfo",
        v2_mount("unified") + "41 31 0:38 / " + root_ + "/x" + std::string(6000, 'y') + " rw - cgroup2 cgroup2 rw");
  mkdir("unified/a");
  ASSERT_TRUE(discover());
  EXPECT_EQ(std::string(l_.leaf), dir("unified/a"));
}

TEST_F(MemLimitTest, HundredsOfMountsAcrossChunks) {
  // Lines straddle the 4 KiB chunks: each must be carried over whole.
  std::string mi;
  for (int i = 0; i < 600; ++i) {
    mi += std::to_string(100 + i) + " 22 0:" + std::to_string(50 + i) + " / /run/user/" + std::to_string(i) +
          " rw,nosuid,nodev,relatime shared:" + std::to_string(i) + " - tmpfs tmpfs rw,size=100k,mode=700\n";
  }
  write("cgroup", "0::/a\n");
  write("mountinfo", mi + v2_mount("unified") + mi);
  ASSERT_GT(mi.size(), 30000u);
  write("unified/a/memory.high", "104857600");  // no newline
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
}

TEST_F(MemLimitTest, LastMountinfoLineWithoutNewline) {
  write("cgroup", "0::/a");
  std::string m = v2_mount("unified");
  m.pop_back();
  write("mountinfo", other_mounts() + m);
  mkdir("unified/a");
  ASSERT_TRUE(discover());
  EXPECT_EQ(std::string(l_.leaf), dir("unified/a"));
}

TEST_F(MemLimitTest, MissingProcCgroup) {
  write("mountinfo", v2_mount("unified"));
  mkdir("unified");
  EXPECT_FALSE(discover());
  EXPECT_EQ(l_.version, 0u);
  EXPECT_EQ(l_.limit_bytes, 0u);
}

TEST_F(MemLimitTest, MissingMountinfo) {
  write("cgroup", "0::/\n");
  mkdir("unified");
  EXPECT_FALSE(discover());
  EXPECT_EQ(l_.version, 0u);
}

TEST_F(MemLimitTest, EmptyAndGarbageProcFiles) {
  write("cgroup", "");
  write("mountinfo", v2_mount("unified"));
  mkdir("unified");
  EXPECT_FALSE(discover());
  write("cgroup", "garbage\n::\n:\n4:memory\n0::relative\n\n");
  EXPECT_FALSE(discover());
  write("cgroup", "0::/\n");
  write("mountinfo", "");
  EXPECT_FALSE(discover());
  write("mountinfo", "garbage\n41 31 0:38 / \n- cgroup2 cgroup2 rw\n1 2 3 4 5 6 -\n\n");
  EXPECT_FALSE(discover());
  EXPECT_EQ(l_.version, 0u);
}

TEST_F(MemLimitTest, MissingLeafDirectoryFails) {
  write("cgroup", "0::/gone\n");
  write("mountinfo", v2_mount("unified"));
  mkdir("unified");
  EXPECT_FALSE(discover());
  EXPECT_EQ(l_.version, 0u);
  EXPECT_STREQ(l_.leaf, "");
}

TEST_F(MemLimitTest, GarbageLimitFilesMeanNoLimit) {
  write("cgroup", "0::/a/b/c/d\n");
  write("mountinfo", v2_mount("unified"));
  write("unified/a/b/c/d/memory.high", "12abc\n");
  write("unified/a/b/c/d/memory.max", "-5\n");
  write("unified/a/b/c/memory.high", "");
  write("unified/a/b/c/memory.max", "\n");
  write("unified/a/b/memory.high", "max max\n");
  write("unified/a/b/memory.max", " 5\n");
  write("unified/a/memory.high", "0x100\n");
  write("unified/a/memory.max", "0\n");  // a limit of nothing: not acted on
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.version, 2u);
  EXPECT_EQ(l_.limit_bytes, 0u);
  EXPECT_EQ(l_.source, LimitSource::kNone);
  // One good value among the garbage is found.
  write("unified/a/b/c/memory.max", "104857600\n");
  ASSERT_TRUE(reread_cgroup_limit(&l_));
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
  EXPECT_EQ(std::string(l_.limit_dir), dir("unified/a/b/c"));
}

TEST_F(MemLimitTest, LimitFileThatIsADirectoryMeansNoLimit) {
  write("cgroup", "0::/a\n");
  write("mountinfo", v2_mount("unified"));
  mkdir("unified/a/memory.max");
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.limit_bytes, 0u);
}

TEST_F(MemLimitTest, TooLongProcessPathFails) {
  write("cgroup", "0::/" + std::string(300, 'p') + "\n");
  write("mountinfo", v2_mount("unified"));
  mkdir("unified");
  EXPECT_FALSE(discover());
  EXPECT_EQ(l_.version, 0u);
}

TEST_F(MemLimitTest, TooLongLeafFails) {
  // Each part fits; mount point + path does not.
  const std::string comp(240, 'c');
  write("cgroup", "0::/" + comp + "\n");
  write("mountinfo", v2_mount("unified"));
  mkdir("unified");
  ASSERT_LT(dir("unified").size(), kCgroupPathMax);
  EXPECT_FALSE(discover());
  EXPECT_EQ(l_.version, 0u);
  EXPECT_STREQ(l_.leaf, "");
}

TEST_F(MemLimitTest, TooLongMountPointFails) {
  write("cgroup", "0::/\n");
  write("mountinfo", v2_mount(std::string(300, 'm')));
  EXPECT_FALSE(discover());
}

TEST_F(MemLimitTest, LeafJustUnderTheMaximumWorks) {
  const size_t base = dir("u").size();
  // leaf = root_/u + "/" + name: kCgroupPathMax - 1 characters in all.
  const std::string name(kCgroupPathMax - 1 - base - 1, 'n');
  write("cgroup", "0::/" + name + "\n");
  write("mountinfo", v2_mount("u"));
  write("u/" + name + "/memory.soft_limit_in_bytes", "1\n");  // a v1 name: ignored on v2
  write("u/" + name + "/memory.max", "104857600\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(strlen(l_.leaf), kCgroupPathMax - 1);
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
  // One more character does not fit.
  write("cgroup", "0::/" + name + "n\n");
  mkdir("u/" + name + "n");
  EXPECT_FALSE(discover());
}

// ---- re-reading ----------------------------------------------------------------

TEST_F(MemLimitTest, RereadFollowsTheLimit) {
  write("cgroup", "0::/a/b\n");
  write("mountinfo", v2_mount("unified"));
  write("unified/a/b/memory.high", "104857600\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
  write("unified/a/b/memory.high", "52428800\n");
  ASSERT_TRUE(reread_cgroup_limit(&l_));
  EXPECT_EQ(l_.limit_bytes, 50 * kMiB);
  EXPECT_EQ(l_.source, LimitSource::kCgroup2High);
  // A parent's new, smaller limit.
  write("unified/a/memory.max", "10485760\n");
  ASSERT_TRUE(reread_cgroup_limit(&l_));
  EXPECT_EQ(l_.limit_bytes, 10 * kMiB);
  EXPECT_EQ(l_.source, LimitSource::kCgroup2Max);
  EXPECT_EQ(std::string(l_.limit_dir), dir("unified/a"));
  // Removed everywhere.
  write("unified/a/b/memory.high", "max\n");
  write("unified/a/memory.max", "max\n");
  ASSERT_TRUE(reread_cgroup_limit(&l_));
  EXPECT_EQ(l_.limit_bytes, 0u);
  EXPECT_EQ(l_.source, LimitSource::kNone);
  EXPECT_STREQ(l_.limit_dir, "");
}

TEST_F(MemLimitTest, RereadKeepsTheLimitWhenTheLeafIsGone) {
  write("cgroup", "0::/a/b\n");
  write("mountinfo", v2_mount("unified"));
  write("unified/a/b/memory.high", "104857600\n");
  ASSERT_TRUE(discover());
  std::filesystem::remove_all(dir("unified/a/b"));
  EXPECT_FALSE(reread_cgroup_limit(&l_));
  EXPECT_EQ(l_.limit_bytes, 100 * kMiB);
  EXPECT_EQ(l_.source, LimitSource::kCgroup2High);
  CgroupLimit none;
  EXPECT_FALSE(reread_cgroup_limit(&none));
}

// ---- usage ---------------------------------------------------------------------

class MemLimitUsageTest : public MemLimitTest {
 protected:
  // A v2 cgroup /a with a limit, and its usage files.
  void v2(const std::string& current, const std::string& stat) {
    write("cgroup", "0::/a/b\n");
    write("mountinfo", v2_mount("unified"));
    write("unified/a/memory.max", "209715200\n");
    mkdir("unified/a/b");
    if (!current.empty()) write("unified/a/memory.current", current);
    if (!stat.empty()) write("unified/a/memory.stat", stat);
    ASSERT_TRUE(discover());
    ASSERT_EQ(std::string(l_.limit_dir), dir("unified/a"));
  }
  static std::string v2_stat(uint64_t inactive) {
    return "anon 1000\nfile 5000\nkernel_stack 0\nactive_anon 10\ninactive_anon 20\nactive_file 30\n"
           "inactive_file_x 1\ninactive_file " +
           std::to_string(inactive) + "\nunevictable 0\n";
  }
};

TEST_F(MemLimitUsageTest, V2SubtractsInactiveFile) {
  v2(std::to_string(100 * kMiB) + "\n", v2_stat(30 * kMiB));
  EXPECT_EQ(cgroup_usage(l_, 0), 70 * kMiB);
  EXPECT_EQ(cgroup_usage(l_, 100 * kMiB), 70 * kMiB);
}

TEST_F(MemLimitUsageTest, V2StatNotReadBelowTheMark) {
  v2(std::to_string(100 * kMiB) + "\n", v2_stat(30 * kMiB));
  EXPECT_EQ(cgroup_usage(l_, 100 * kMiB + 1), 100 * kMiB);
}

TEST_F(MemLimitUsageTest, V2InactiveLargerThanUsage) {
  v2(std::to_string(10 * kMiB) + "\n", v2_stat(30 * kMiB));
  EXPECT_EQ(cgroup_usage(l_, 0), 0u);
}

TEST_F(MemLimitUsageTest, V2WithoutStat) {
  v2(std::to_string(100 * kMiB) + "\n", "");
  EXPECT_EQ(cgroup_usage(l_, 0), 100 * kMiB);
  write("unified/a/memory.stat", "anon 5\ninactive_file_x 7\n");  // no inactive_file line
  EXPECT_EQ(cgroup_usage(l_, 0), 100 * kMiB);
}

TEST_F(MemLimitUsageTest, Unreadable) {
  v2("", v2_stat(1));
  EXPECT_EQ(cgroup_usage(l_, 0), 0u);
  write("unified/a/memory.current", "garbage\n");
  EXPECT_EQ(cgroup_usage(l_, 0), 0u);
  write("unified/a/memory.current", "");
  EXPECT_EQ(cgroup_usage(l_, 0), 0u);
  EXPECT_EQ(cgroup_usage(CgroupLimit{}, 0), 0u);
}

TEST_F(MemLimitUsageTest, LongStatFile) {
  // inactive_file past the first 4 KiB of memory.stat.
  std::string stat;
  for (int i = 0; i < 300; ++i) stat += "counter_" + std::to_string(i) + " " + std::to_string(i) + "\n";
  stat += "inactive_file " + std::to_string(30 * kMiB);  // the last line, no newline
  ASSERT_GT(stat.size(), 4096u);
  v2(std::to_string(100 * kMiB) + "\n", stat);
  EXPECT_EQ(cgroup_usage(l_, 0), 70 * kMiB);
}

TEST_F(MemLimitUsageTest, V1UsageAndTotalInactiveFile) {
  write("cgroup", "4:memory:/x\n");
  write("mountinfo", v1_mount("memory"));
  write("memory/x/memory.limit_in_bytes", "209715200\n");
  write("memory/x/memory.usage_in_bytes", std::to_string(100 * kMiB) + "\n");
  // v1 has both; the hierarchical total is the one.
  write("memory/x/memory.stat",
        "cache 100\ninactive_file 1\nactive_file 2\nhierarchical_memory_limit 209715200\n"
        "total_cache 100\ntotal_inactive_file " +
            std::to_string(30 * kMiB) + "\ntotal_active_file 5\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(cgroup_usage(l_, 0), 70 * kMiB);
  EXPECT_EQ(cgroup_usage(l_, 200 * kMiB), 100 * kMiB);
}

TEST_F(MemLimitUsageTest, WithoutALimitTheLeafsUsage) {
  write("cgroup", "0::/a\n");
  write("mountinfo", v2_mount("unified"));
  write("unified/a/memory.current", "4096\n");
  ASSERT_TRUE(discover());
  EXPECT_EQ(l_.limit_bytes, 0u);
  EXPECT_EQ(cgroup_usage(l_, UINT64_MAX), 4096u);
}

// ---- parsers and names -----------------------------------------------------------

TEST(MemLimitParse, LimitValue) {
  uint64_t v = 7;
  EXPECT_TRUE(parse_limit_value("max\n", &v));
  EXPECT_EQ(v, UINT64_MAX);
  EXPECT_TRUE(parse_limit_value("max", &v));
  EXPECT_EQ(v, UINT64_MAX);
  EXPECT_TRUE(parse_limit_value("104857600\n", &v));
  EXPECT_EQ(v, 104857600u);
  EXPECT_TRUE(parse_limit_value("4096", &v));
  EXPECT_EQ(v, 4096u);
  EXPECT_TRUE(parse_limit_value("0\n", &v));
  EXPECT_EQ(v, 0u);
  EXPECT_TRUE(parse_limit_value("9223372036854771712\n", &v));  // v1 unlimited
  EXPECT_EQ(v, UINT64_MAX);
  EXPECT_TRUE(parse_limit_value("1152921504606846976", &v));  // 2^60
  EXPECT_EQ(v, UINT64_MAX);
  EXPECT_TRUE(parse_limit_value("1152921504606846975", &v));  // 2^60 - 1
  EXPECT_EQ(v, (1ull << 60) - 1);
  EXPECT_TRUE(parse_limit_value("18446744073709551616123\n", &v));  // past 2^64
  EXPECT_EQ(v, UINT64_MAX);
  v = 7;
  for (const char* bad : {"", "\n", "12abc", "-5", "+5", " 5", "maxi", "max 1", "0x10", "1 2", "5k", "ma"}) {
    EXPECT_FALSE(parse_limit_value(bad, &v)) << '"' << bad << '"';
    EXPECT_EQ(v, 7u) << '"' << bad << '"';
  }
}

TEST(MemLimitParse, StatValue) {
  const char* stat = "inactive_file_x 5\ninactive_filex 6\nx_inactive_file 7\ninactive_file 30\nactive_file 40";
  uint64_t v = 0;
  EXPECT_TRUE(parse_stat_value(stat, "inactive_file", &v));
  EXPECT_EQ(v, 30u);
  EXPECT_TRUE(parse_stat_value(stat, "active_file", &v));  // the last line, no newline
  EXPECT_EQ(v, 40u);
  EXPECT_TRUE(parse_stat_value(stat, "inactive_file_x", &v));
  EXPECT_EQ(v, 5u);
  EXPECT_FALSE(parse_stat_value(stat, "file", &v));
  EXPECT_FALSE(parse_stat_value(stat, "inactive", &v));
  EXPECT_FALSE(parse_stat_value("", "inactive_file", &v));
  EXPECT_FALSE(parse_stat_value("inactive_file\n", "inactive_file", &v));
  EXPECT_FALSE(parse_stat_value("inactive_file \n", "inactive_file", &v));
  EXPECT_FALSE(parse_stat_value("inactive_file 12abc\n", "inactive_file", &v));
  EXPECT_FALSE(parse_stat_value("inactive_file 99999999999999999999999\n", "inactive_file", &v));
  EXPECT_TRUE(parse_stat_value("\n\ninactive_file 0\n", "inactive_file", &v));
  EXPECT_EQ(v, 0u);
  EXPECT_TRUE(parse_stat_value("total_inactive_file 8\n", "total_inactive_file", &v));
  EXPECT_EQ(v, 8u);
  EXPECT_FALSE(parse_stat_value("total_inactive_file 8\n", "inactive_file", &v));
}

TEST(MemLimitParse, SourceNames) {
  EXPECT_STREQ(limit_source_name(LimitSource::kNone), "none");
  EXPECT_STREQ(limit_source_name(LimitSource::kOption), "option");
  EXPECT_STREQ(limit_source_name(LimitSource::kCgroup2High), "memory.high");
  EXPECT_STREQ(limit_source_name(LimitSource::kCgroup2Max), "memory.max");
  EXPECT_STREQ(limit_source_name(LimitSource::kCgroup1Soft), "memory.soft_limit_in_bytes");
  EXPECT_STREQ(limit_source_name(LimitSource::kCgroup1Hard), "memory.limit_in_bytes");
}

// ---- the os layer's file readers ---------------------------------------------------

TEST_F(MemLimitTest, OsReadFile) {
  write("f", "hello world\n");
  char buf[6];
  EXPECT_EQ(os::read_file((root_ + "/f").c_str(), buf, sizeof(buf)), 5);
  EXPECT_STREQ(buf, "hello");
  char big[64];
  EXPECT_EQ(os::read_file((root_ + "/f").c_str(), big, sizeof(big)), 12);
  EXPECT_STREQ(big, "hello world\n");
  char one[1] = {'x'};
  EXPECT_EQ(os::read_file((root_ + "/f").c_str(), one, sizeof(one)), 0);
  EXPECT_EQ(one[0], 0);
  errno = 1234;
  EXPECT_EQ(os::read_file((root_ + "/none").c_str(), big, sizeof(big)), -ENOENT);
  EXPECT_STREQ(big, "");
  EXPECT_LT(os::read_file(root_.c_str(), big, sizeof(big)), 0);  // EISDIR
  EXPECT_EQ(errno, 1234);
  EXPECT_TRUE(os::is_directory(root_.c_str()));
  EXPECT_FALSE(os::is_directory((root_ + "/f").c_str()));
  EXPECT_FALSE(os::is_directory((root_ + "/none").c_str()));
  const int fd = os::open_read((root_ + "/f").c_str());
  ASSERT_GE(fd, 0);
  char c[4];
  EXPECT_EQ(os::read_fd(fd, c, 4), 4);
  os::close_fd(fd);
  EXPECT_EQ(os::open_read((root_ + "/none").c_str()), -ENOENT);
}

// ---- this machine ----------------------------------------------------------------

TEST(MemLimitReal, DiscoverOnThisMachine) {
  CgroupLimit l;
  const bool found = discover_cgroup(CgroupFiles{}, &l);
  if (!found) {
    EXPECT_EQ(l.version, 0u);
    EXPECT_EQ(l.limit_bytes, 0u);
    GTEST_SKIP() << "no memory cgroup found on this machine";
  }
  EXPECT_TRUE(l.version == 1 || l.version == 2);
  ASSERT_GT(l.mount_len, 0u);
  ASSERT_LE(l.mount_len, strlen(l.leaf));
  const std::string mount(l.leaf, l.mount_len);
  EXPECT_TRUE(std::filesystem::is_directory(mount)) << mount;
  EXPECT_TRUE(std::filesystem::is_directory(l.leaf)) << l.leaf;
  // The mount point is one of the machine's mounts.
  std::ifstream mi("/proc/self/mountinfo");
  bool listed = false;
  for (std::string line; std::getline(mi, line);) {
    if (line.find(" " + mount + " ") != std::string::npos) listed = true;
  }
  EXPECT_TRUE(listed) << mount;
  if (l.limit_bytes) {
    EXPECT_NE(l.source, LimitSource::kNone);
    EXPECT_EQ(std::string(l.leaf).rfind(l.limit_dir, 0), 0u) << l.limit_dir;
  }
  EXPECT_TRUE(reread_cgroup_limit(&l));
  printf("cgroup v%u leaf %s limit %llu (%s) usage %llu\n", l.version, l.leaf,
         static_cast<unsigned long long>(l.limit_bytes), limit_source_name(l.source),
         static_cast<unsigned long long>(cgroup_usage(l, 0)));
}

}  // namespace
