// skiff-img subcommands. Each returns the process exit code, following
// qemu-img: 0 success, 1 error (usage or operation); check: 2 corruptions,
// 3 leaks only; compare: 1 images differ, 2 error. Messages go to stderr
// prefixed "skiff-img: ".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace skiff::img {

struct CreateArgs {
  std::string format = "raw";
  std::vector<std::string> options;  // -o, each "k=v,k=v"
  std::string backing;               // -b
  std::string backing_format;        // -F
  std::string file;
  std::string size;  // "" = from the backing file
};
int cmd_create(const CreateArgs& a);

struct InfoArgs {
  std::string format;
  std::string output = "human";
  bool backing_chain = false;
  std::string file;
};
int cmd_info(const InfoArgs& a);

struct MapArgs {
  std::string format;
  std::string output = "human";
  std::string file;
};
int cmd_map(const MapArgs& a);

struct CheckArgs {
  std::string format;
  std::string repair;  // "", "leaks", "all"
  std::string output = "human";
  std::string file;
};
int cmd_check(const CheckArgs& a);

struct SnapshotArgs {
  std::string create, apply, remove;
  bool list = false;
  std::string file;
};
int cmd_snapshot(const SnapshotArgs& a);

struct ConvertArgs {
  std::string src_format;
  std::string dst_format = "raw";
  std::vector<std::string> options;
  bool compress = false;
  bool progress = false;
  std::string src, dst;
};
int cmd_convert(const ConvertArgs& a);

struct CompareArgs {
  std::string format_a, format_b;
  std::string a, b;
};
int cmd_compare(const CompareArgs& a);

struct ResizeArgs {
  std::string format;
  bool shrink = false;
  std::string file;
  std::string size;  // "N", "+N", "-N"
};
int cmd_resize(const ResizeArgs& a);

struct RebaseArgs {
  std::string format;
  bool unsafe = false;
  std::string backing;
  std::string backing_format;
  std::string file;
};
int cmd_rebase(const RebaseArgs& a);

struct CommitArgs {
  std::string format;
  std::string file;
};
int cmd_commit(const CommitArgs& a);

}  // namespace skiff::img
