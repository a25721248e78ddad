#include "account_names.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <vector>

namespace devmove {

namespace {

// getpw*_r/getgr*_r report ERANGE when the buffer is too small for the entry
// (a group with many members): grow, up to a bound.
constexpr size_t kFirstBufferBytes = 1024;
constexpr size_t kMaxBufferBytes = 1024 * 1024;

template <typename Entry, typename Lookup, typename NameField>
std::optional<std::string> NameOf(Lookup lookup, NameField name_of) {
  for (size_t size = kFirstBufferBytes; size <= kMaxBufferBytes; size *= 4) {
    std::vector<char> buffer(size);
    Entry entry{};
    Entry* found = nullptr;
    const int rc = lookup(&entry, buffer.data(), buffer.size(), &found);
    if (rc == ERANGE) continue;
    if (rc != 0 || found == nullptr || name_of(*found) == nullptr) return std::nullopt;
    return std::string(name_of(*found));
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> UserName(uid_t uid) {
  return NameOf<passwd>(
      [uid](passwd* entry, char* buffer, size_t size, passwd** found) {
        return getpwuid_r(uid, entry, buffer, size, found);
      },
      [](const passwd& entry) { return entry.pw_name; });
}

std::optional<std::string> GroupName(gid_t gid) {
  return NameOf<group>(
      [gid](group* entry, char* buffer, size_t size, group** found) {
        return getgrgid_r(gid, entry, buffer, size, found);
      },
      [](const group& entry) { return entry.gr_name; });
}

}  // namespace devmove
