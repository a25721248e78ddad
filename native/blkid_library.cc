#include "blkid_library.h"

#include <errno.h>
#include <sys/sysmacros.h>

#include <atomic>
#include <cassert>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <thread>

namespace devmove {

namespace {

std::string OrEmpty(const char* s) { return s != nullptr ? std::string(s) : std::string(); }

// What blkid_do_safeprobe() returns (blkid.h documents 0, 1, -1 and -2).
constexpr int kSafeprobeFound = 0;
constexpr int kSafeprobeNothing = 1;
constexpr int kSafeprobeAmbiguous = -2;

// The superblock values asked for: lsblk's FSTYPE, LABEL, UUID and FSVER.
constexpr int kSuperblockFlags = kBlkidSublksLabel | kBlkidSublksUuid | kBlkidSublksType | kBlkidSublksVersion;

// Partition entries are read from the whole disk's list (ReadEntries), one
// table parse per disk, so a partition's own probe does not ask libblkid to
// open the disk and parse its table again (BLKID_PARTS_ENTRY_DETAILS).
constexpr int kPartitionFlags = 0;

}  // namespace

// ---- BlkidLibrary -------------------------------------------------------------

std::shared_ptr<const BlkidLibrary> BlkidLibrary::Load(const std::string& name, SysError* error) {
  std::unique_ptr<SharedLibrary> so = SharedLibrary::Open(name, "libblkid1", error);
  if (!so) return nullptr;
  std::shared_ptr<BlkidLibrary> lib(new BlkidLibrary());
  lib->so_ = std::move(so);
  const SharedLibrary& dl = *lib->so_;
  BlkidApi& a = lib->api_;
  const char* missing = nullptr;
#define DEVMOVE_BLKID_RESOLVE(fn) \
  if (missing == nullptr && !dl.Resolve(#fn, &a.fn)) missing = #fn;
  DEVMOVE_BLKID_RESOLVE(blkid_new_probe_from_filename)
  DEVMOVE_BLKID_RESOLVE(blkid_free_probe)
  DEVMOVE_BLKID_RESOLVE(blkid_probe_enable_superblocks)
  DEVMOVE_BLKID_RESOLVE(blkid_probe_set_superblocks_flags)
  DEVMOVE_BLKID_RESOLVE(blkid_probe_enable_partitions)
  DEVMOVE_BLKID_RESOLVE(blkid_probe_set_partitions_flags)
  DEVMOVE_BLKID_RESOLVE(blkid_do_safeprobe)
  DEVMOVE_BLKID_RESOLVE(blkid_probe_numof_values)
  DEVMOVE_BLKID_RESOLVE(blkid_probe_get_value)
  DEVMOVE_BLKID_RESOLVE(blkid_probe_get_partitions)
  DEVMOVE_BLKID_RESOLVE(blkid_partlist_devno_to_partition)
  DEVMOVE_BLKID_RESOLVE(blkid_partition_get_partno)
  DEVMOVE_BLKID_RESOLVE(blkid_partition_get_name)
  DEVMOVE_BLKID_RESOLVE(blkid_partition_get_uuid)
  DEVMOVE_BLKID_RESOLVE(blkid_partition_get_type)
  DEVMOVE_BLKID_RESOLVE(blkid_partition_get_type_string)
  DEVMOVE_BLKID_RESOLVE(blkid_partition_get_flags)
  DEVMOVE_BLKID_RESOLVE(blkid_partition_get_table)
  DEVMOVE_BLKID_RESOLVE(blkid_parttable_get_type)
#undef DEVMOVE_BLKID_RESOLVE
  if (missing != nullptr) {
    *error = dl.Lacks(missing, "install a current libblkid1 package");
    return nullptr;
  }
  if (dl.Resolve("blkid_init_debug", &a.blkid_init_debug)) a.blkid_init_debug(0);
  return lib;
}

// ---- BlkidProbe ---------------------------------------------------------------

std::vector<BlkidProbeOutcome> BlkidProbe::ProbeAll(const std::shared_ptr<const BlkidLibrary>& library,
                                                    const std::vector<BlkidProbeRequest>& requests, size_t threads_max) {
  assert(library != nullptr && threads_max >= 1 && threads_max <= kBlkidProbeThreadsMax);
  std::vector<BlkidProbeOutcome> outcomes(requests.size());
  std::atomic<size_t> next{0};
  // Each worker takes the next request until none is left; every outcome
  // slot is written by exactly one thread and read after the joins.
  auto work = [&]() {
    for (size_t i = next.fetch_add(1); i < requests.size(); i = next.fetch_add(1)) {
      std::unique_ptr<BlkidProbe> probe = Open(library, requests[i].path, &outcomes[i].error);
      if (probe) outcomes[i].error = probe->Probe(requests[i].partitions, &outcomes[i].result);
    }
  };
  std::vector<std::thread> helpers;
  const size_t threads = std::min(threads_max, requests.size());
  for (size_t t = 1; t < threads; ++t) {
    try {
      helpers.emplace_back(work);
    } catch (const std::system_error&) {
      break;  // no more threads (EAGAIN): the ones running, and this one, do the rest
    }
  }
  work();  // the calling thread probes too
  for (std::thread& helper : helpers) helper.join();
  assert(next.load() >= requests.size());
  return outcomes;
}

std::unique_ptr<BlkidProbe> BlkidProbe::Open(std::shared_ptr<const BlkidLibrary> library, const std::string& path,
                                             SysError* error) {
  assert(library != nullptr);
  errno = 0;
  // libblkid opens the node O_RDONLY|O_CLOEXEC (and O_NONBLOCK, so an empty
  // CD drive does not close its tray); on failure errno is the open's.
  blkid_probe_t probe = library->api().blkid_new_probe_from_filename(path.c_str());
  if (probe == nullptr) {
    *error = SysError::Make(errno != 0 ? errno : EIO, "open", path);
    return nullptr;
  }
  std::unique_ptr<BlkidProbe> self(new BlkidProbe());
  self->library_ = std::move(library);
  self->probe_ = probe;
  self->path_ = path;
  return self;
}

BlkidProbe::~BlkidProbe() {
  if (probe_ != nullptr) library_->api().blkid_free_probe(probe_);  // closes the descriptor
}

SysError BlkidProbe::Probe(const std::vector<std::pair<uint32_t, uint32_t>>& partitions, BlkidProbeResult* result) {
  assert(probe_ != nullptr && result != nullptr);
  const BlkidApi& a = library_->api();
  if (a.blkid_probe_enable_superblocks(probe_, 1) < 0 ||
      a.blkid_probe_set_superblocks_flags(probe_, kSuperblockFlags) < 0 ||
      a.blkid_probe_enable_partitions(probe_, 1) < 0 || a.blkid_probe_set_partitions_flags(probe_, kPartitionFlags) < 0) {
    return SysError::Make(EINVAL, "blkid_probe_enable_superblocks", path_);
  }
  errno = 0;
  const int rc = a.blkid_do_safeprobe(probe_);
  if (rc == kSafeprobeFound) {
    result->outcome = BlkidOutcome::kFound;
    const int count = a.blkid_probe_numof_values(probe_);
    for (int i = 0; i < count; ++i) {
      const char* name = nullptr;
      const char* data = nullptr;
      size_t length = 0;
      if (a.blkid_probe_get_value(probe_, i, &name, &data, &length) != 0 || name == nullptr || data == nullptr) continue;
      // `length` counts the terminating NUL libblkid stores with each value.
      result->values.emplace_back(name, std::string(data, strnlen(data, length)));
    }
  } else if (rc == kSafeprobeNothing) {
    result->outcome = BlkidOutcome::kNothing;
  } else if (rc == kSafeprobeAmbiguous) {
    result->outcome = BlkidOutcome::kAmbiguous;
  } else {
    // A read failed (EIO on a bad sector, ENOMEDIUM, ...): libblkid leaves
    // the read's errno.
    return SysError::Make(errno != 0 ? errno : EIO, "blkid_do_safeprobe", path_);
  }
  ReadEntries(partitions, result);
  return SysError();
}

void BlkidProbe::ReadEntries(const std::vector<std::pair<uint32_t, uint32_t>>& partitions, BlkidProbeResult* result) {
  if (partitions.empty()) return;
  const BlkidApi& a = library_->api();
  // Parsed independently of blkid_do_safeprobe(): the table is listed even
  // when the disk's own content was ambiguous, as `blkid -p` of a partition
  // would list it.
  blkid_partlist_t list = a.blkid_probe_get_partitions(probe_);
  for (const auto& [major_number, minor_number] : partitions) {
    BlkidPartitionEntry entry;
    entry.major = major_number;
    entry.minor = minor_number;
    // Matched as libblkid matches for `blkid -p PARTITION`: by the kernel
    // partition's start and size in sysfs.
    blkid_partition_t partition =
        list != nullptr ? a.blkid_partlist_devno_to_partition(list, makedev(major_number, minor_number)) : nullptr;
    if (partition != nullptr) {
      entry.found = true;
      entry.number = a.blkid_partition_get_partno(partition);
      blkid_parttable_t table = a.blkid_partition_get_table(partition);
      if (table != nullptr) entry.scheme = OrEmpty(a.blkid_parttable_get_type(table));
      entry.name = OrEmpty(a.blkid_partition_get_name(partition));
      entry.uuid = OrEmpty(a.blkid_partition_get_uuid(partition));
      const char* type = a.blkid_partition_get_type_string(partition);
      char buffer[32];
      if (type != nullptr) {
        entry.type = type;
      } else {
        snprintf(buffer, sizeof(buffer), "0x%x", static_cast<unsigned>(a.blkid_partition_get_type(partition)));
        entry.type = buffer;
      }
      const unsigned long long flags = a.blkid_partition_get_flags(partition);
      if (flags != 0) {
        snprintf(buffer, sizeof(buffer), "0x%llx", flags);
        entry.flags = buffer;
      }
    }
    result->entries.push_back(std::move(entry));
  }
}

}  // namespace devmove
