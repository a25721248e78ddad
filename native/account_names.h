// User and group names of numeric ids, through the C library's name service
// (getpwuid_r/getgrgid_r: /etc/passwd and /etc/group, or whatever
// nsswitch.conf adds), as lsblk's OWNER and GROUP columns resolve them. Node
// has no API for another user's name. Pure C++, no Node-API.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

namespace devmove {

// nullopt when the id has no entry (or the lookup fails).
std::optional<std::string> UserName(uid_t uid);
std::optional<std::string> GroupName(gid_t gid);

}  // namespace devmove
