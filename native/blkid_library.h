// libblkid, loaded at run time with dlopen("libblkid.so.1") exactly as libudev
// is (udev_library.h): building needs no libblkid-dev, the addon loads without
// libblkid, and only the device manager's content probe needs it, saying so
// (ELIBACC) when it is missing. Copies never load it.
//
// Only the low-level probe API is used, read-only:
// blkid_new_probe_from_filename() opens the device O_RDONLY (never for
// writing, never O_EXCL, so it does not disturb a copy holding the device),
// superblocks and partitions chains, blkid_do_safeprobe(), the NAME=value
// results and the binary partition list. The signatures are those of
// <blkid.h>; every symbol below is versioned BLKID_2.15 to BLKID_2.18
// (util-linux 2009-2010), so any libblkid.so.1 in use today has them.
//
// BlkidLibrary: the handle and its function table, immutable and shared by
// every probe made from it, so dlclose runs after the last probe is gone.
// BlkidProbe: one RAII probe of one device node (blkid_free_probe closes it).
// ProbeAll: many devices at once, on a few threads (see there why).
// No process-global state: each Node environment loads its own library
// object (dlopen reference-counts the mapping). Pure C++, no Node-API.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "shared_library.h"
#include "sys_error.h"

// libblkid's opaque types (global namespace, as in blkid.h).
struct blkid_struct_probe;
struct blkid_struct_partlist;
struct blkid_struct_partition;
struct blkid_struct_parttable;

namespace devmove {

using blkid_probe_t = blkid_struct_probe*;
using blkid_partlist_t = blkid_struct_partlist*;
using blkid_partition_t = blkid_struct_partition*;
using blkid_parttable_t = blkid_struct_parttable*;

// Flag values of <blkid.h>; part of the library's ABI.
constexpr int kBlkidSublksLabel = 1 << 1;
constexpr int kBlkidSublksUuid = 1 << 3;
constexpr int kBlkidSublksType = 1 << 5;
constexpr int kBlkidSublksVersion = 1 << 8;
constexpr int kBlkidPartsEntryDetails = 1 << 2;

struct BlkidApi {
  blkid_probe_t (*blkid_new_probe_from_filename)(const char*);
  void (*blkid_free_probe)(blkid_probe_t);
  int (*blkid_probe_enable_superblocks)(blkid_probe_t, int);
  int (*blkid_probe_set_superblocks_flags)(blkid_probe_t, int);
  int (*blkid_probe_enable_partitions)(blkid_probe_t, int);
  int (*blkid_probe_set_partitions_flags)(blkid_probe_t, int);
  int (*blkid_do_safeprobe)(blkid_probe_t);
  int (*blkid_probe_numof_values)(blkid_probe_t);
  int (*blkid_probe_get_value)(blkid_probe_t, int, const char**, const char**, size_t*);
  // The partition list of a whole disk, and one kernel partition's entry in it.
  blkid_partlist_t (*blkid_probe_get_partitions)(blkid_probe_t);
  blkid_partition_t (*blkid_partlist_devno_to_partition)(blkid_partlist_t, dev_t);
  int (*blkid_partition_get_partno)(blkid_partition_t);
  const char* (*blkid_partition_get_name)(blkid_partition_t);
  const char* (*blkid_partition_get_uuid)(blkid_partition_t);
  int (*blkid_partition_get_type)(blkid_partition_t);
  const char* (*blkid_partition_get_type_string)(blkid_partition_t);
  unsigned long long (*blkid_partition_get_flags)(blkid_partition_t);
  blkid_parttable_t (*blkid_partition_get_table)(blkid_partition_t);
  const char* (*blkid_parttable_get_type)(blkid_parttable_t);
  // Optional (BLKID_2.23; nullptr when absent): reads LIBBLKID_DEBUG into the
  // library's one global, called once at load so that probes on several
  // threads never race to initialise it.
  void (*blkid_init_debug)(int);
};

class BlkidLibrary {
 public:
  static constexpr const char* kDefaultName = "libblkid.so.1";

  // dlopen(name) and resolve every function. On failure returns nullptr and
  // fills `error` (ELIBACC, syscall "dlopen" or "dlsym", path = name, and a
  // message saying which package to install).
  static std::shared_ptr<const BlkidLibrary> Load(const std::string& name, SysError* error);

  BlkidLibrary(const BlkidLibrary&) = delete;
  BlkidLibrary& operator=(const BlkidLibrary&) = delete;

  const BlkidApi& api() const { return api_; }
  const std::string& name() const { return so_->name(); }

 private:
  BlkidLibrary() = default;
  std::unique_ptr<SharedLibrary> so_;
  BlkidApi api_{};
};

// One kernel partition's entry in its disk's partition table, formatted as
// libblkid formats PART_ENTRY_* for `blkid -p` of the partition itself.
struct BlkidPartitionEntry {
  uint32_t major = 0;  // the kernel partition asked about
  uint32_t minor = 0;
  bool found = false;  // the table has an entry for it
  int number = 0;      // PART_ENTRY_NUMBER
  std::string scheme;  // PART_ENTRY_SCHEME: the table holding it ("gpt", "dos", ...)
  std::string type;    // PART_ENTRY_TYPE: a GUID string, or "0x83" for MBR-style types
  std::string name;    // PART_ENTRY_NAME ("" when none)
  std::string uuid;    // PART_ENTRY_UUID ("" when none)
  std::string flags;   // PART_ENTRY_FLAGS ("0x1"; "" when zero)
};

enum class BlkidOutcome { kFound, kNothing, kAmbiguous };

struct BlkidProbeResult {
  BlkidOutcome outcome = BlkidOutcome::kNothing;
  // NAME=value pairs in libblkid's order: TYPE, LABEL, UUID, VERSION for a
  // superblock; PTTYPE, PTUUID for a partition table (as `blkid -p`).
  std::vector<std::pair<std::string, std::string>> values;
  // One per partition asked about, in the order asked.
  std::vector<BlkidPartitionEntry> entries;
};

// One device to probe, and the kernel partitions of it (a whole disk) whose
// table entries are wanted.
struct BlkidProbeRequest {
  std::string path;
  std::vector<std::pair<uint32_t, uint32_t>> partitions;
};

struct BlkidProbeOutcome {
  SysError error;  // failed(): the device could not be opened or read
  BlkidProbeResult result;
};

// Upper bound on the threads ProbeAll uses.
constexpr size_t kBlkidProbeThreadsMax = 8;

class BlkidProbe {
 public:
  // Probes every request, up to `threads_max` devices at once, and returns
  // once all are done (outcomes in request order). Why threads: a probe is
  // ~40 small reads, and the kernel drops a block device's page cache at its
  // last close, so each one goes to the device (measured on a loop device:
  // 1.3-2 ms per probe, 0.09 ms while another descriptor held the device
  // open); probes of different devices wait in parallel. Each thread has its
  // own probe objects; libblkid keeps no shared state between probes (its
  // debug mask is initialised at load, see BlkidApi::blkid_init_debug).
  static std::vector<BlkidProbeOutcome> ProbeAll(const std::shared_ptr<const BlkidLibrary>& library,
                                                 const std::vector<BlkidProbeRequest>& requests, size_t threads_max);

  // Opens `path` read-only. nullptr + error (errno of the open: EACCES,
  // ENOENT, ENOMEDIUM, ...; syscall "open") on failure.
  static std::unique_ptr<BlkidProbe> Open(std::shared_ptr<const BlkidLibrary> library, const std::string& path,
                                          SysError* error);
  ~BlkidProbe();
  BlkidProbe(const BlkidProbe&) = delete;
  BlkidProbe& operator=(const BlkidProbe&) = delete;

  // Superblocks (type, label, UUID, version) and partition table (type, id)
  // with blkid_do_safeprobe: an ambiguous device (two signatures) reports
  // nothing, as lsblk and `blkid -p` do. `partitions`: kernel partitions of
  // this whole disk whose table entries are wanted (empty: none, and the
  // partition list is not built).
  SysError Probe(const std::vector<std::pair<uint32_t, uint32_t>>& partitions, BlkidProbeResult* result);

 private:
  BlkidProbe() = default;
  void ReadEntries(const std::vector<std::pair<uint32_t, uint32_t>>& partitions, BlkidProbeResult* result);

  std::shared_ptr<const BlkidLibrary> library_;
  blkid_probe_t probe_ = nullptr;
  std::string path_;
};

}  // namespace devmove
