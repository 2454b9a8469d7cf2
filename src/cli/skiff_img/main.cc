// skiff-img: the qemu-img of skiff (DESIGN.md "Programs"). Argument parsing
// only; each subcommand lives in a cmd_*.cc file. Exit codes follow qemu-img:
// a usage error exits 1.
#include <CLI/CLI.hpp>

#include "cli/skiff_img/commands.h"

namespace {

using namespace skiff::img;

void add_output(CLI::App* c, std::string& out) {
  c->add_option("--output", out, "human or json")->check(CLI::IsMember({"human", "json"}));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"skiff-img: create, inspect, check, convert and snapshot disk images (raw, qcow2)"};
  app.require_subcommand(1);

  CreateArgs create;
  auto* c = app.add_subcommand("create", "create a new image");
  c->add_option("-f", create.format, "format: raw or qcow2")
      ->check(CLI::IsMember({"raw", "qcow2"}));
  // -o may repeat; each occurrence takes exactly one argument (CLI11 would
  // otherwise let a vector option swallow FILE and SIZE).
  c->add_option_function<std::string>(
       "-o", [&](const std::string& v) { create.options.push_back(v); },
       "options: cluster_size=,backing_file=,backing_fmt=,compression_type=,preallocation=,"
       "lazy_refcounts=,refcount_bits=,compat=")
      ->trigger_on_parse();
  c->add_option("-b", create.backing, "backing file");
  c->add_option("-F", create.backing_format, "backing file format");
  c->add_option("FILE", create.file)->required();
  c->add_option("SIZE", create.size, "virtual size (k, M, G, T suffixes)");

  InfoArgs info;
  auto* i = app.add_subcommand("info", "show image information");
  i->add_option("-f", info.format);
  add_output(i, info.output);
  i->add_flag("--backing-chain", info.backing_chain);
  i->add_option("FILE", info.file)->required();

  MapArgs map;
  auto* m = app.add_subcommand("map", "show how the virtual disk maps to files");
  m->add_option("-f", map.format);
  add_output(m, map.output);
  m->add_option("FILE", map.file)->required();

  CheckArgs check;
  auto* k = app.add_subcommand("check", "check (and repair) a qcow2 image's metadata");
  k->add_option("-f", check.format);
  k->add_option("-r", check.repair, "repair: leaks or all")->check(CLI::IsMember({"leaks", "all"}));
  add_output(k, check.output);
  k->add_option("FILE", check.file)->required();

  SnapshotArgs snap;
  auto* s = app.add_subcommand("snapshot", "internal snapshots of a qcow2 image");
  auto* sc = s->add_option("-c", snap.create, "create snapshot NAME");
  auto* sa = s->add_option("-a", snap.apply, "apply (revert to) snapshot NAME");
  auto* sd = s->add_option("-d", snap.remove, "delete snapshot NAME");
  auto* sl = s->add_flag("-l", snap.list, "list snapshots");
  sc->excludes(sa)->excludes(sd)->excludes(sl);
  sa->excludes(sd)->excludes(sl);
  sd->excludes(sl);
  s->add_option("FILE", snap.file)->required();

  ConvertArgs conv;
  auto* v = app.add_subcommand("convert", "copy an image into a new one, skipping zeroes");
  v->add_option("-f", conv.src_format);
  v->add_option("-O", conv.dst_format)->check(CLI::IsMember({"raw", "qcow2"}));
  v->add_option_function<std::string>(
       "-o", [&](const std::string& o) { conv.options.push_back(o); }, "target options")
      ->trigger_on_parse();
  v->add_flag("-c", conv.compress, "write compressed clusters (qcow2)");
  v->add_flag("-p", conv.progress, "show progress on a terminal");
  v->add_option("SRC", conv.src)->required();
  v->add_option("DST", conv.dst)->required();

  CompareArgs cmp;
  auto* p = app.add_subcommand("compare", "compare the contents of two images");
  p->add_option("-f", cmp.format_a);
  p->add_option("-F", cmp.format_b);
  p->add_option("A", cmp.a)->required();
  p->add_option("B", cmp.b)->required();

  ResizeArgs rs;
  auto* r = app.add_subcommand("resize", "change the virtual size");
  r->add_option("-f", rs.format);
  r->add_flag("--shrink", rs.shrink, "allow shrinking (data past the new end is lost)");
  r->add_option("FILE", rs.file)->required();
  r->add_option("SIZE", rs.size, "new size, or +N / -N")->required();
  r->allow_extras(false);

  RebaseArgs rb;
  auto* b = app.add_subcommand("rebase", "change the backing file");
  b->add_option("-f", rb.format);
  b->add_flag("-u", rb.unsafe, "only rewrite the header");
  b->add_option("-b", rb.backing, "new backing file ('' for none)")->required();
  b->add_option("-F", rb.backing_format);
  b->add_option("FILE", rb.file)->required();

  CommitArgs cm;
  auto* t = app.add_subcommand("commit", "write an overlay's data into its backing file");
  t->add_option("-f", cm.format);
  t->add_option("FILE", cm.file)->required();

  // "-1" style negative sizes for resize must not parse as options.
  app.allow_extras(false);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "skiff-img: %s\nTry 'skiff-img --help' for more information.\n", e.what());
    return 1;
  }
  if (*c) return cmd_create(create);
  if (*i) return cmd_info(info);
  if (*m) return cmd_map(map);
  if (*k) return cmd_check(check);
  if (*s) {
    if (snap.create.empty() && snap.apply.empty() && snap.remove.empty() && !snap.list) {
      std::fprintf(stderr, "skiff-img: snapshot: one of -c, -l, -a, -d is required\n");
      return 1;
    }
    return cmd_snapshot(snap);
  }
  if (*v) return cmd_convert(conv);
  if (*p) return cmd_compare(cmp);
  if (*r) return cmd_resize(rs);
  if (*b) return cmd_rebase(rb);
  if (*t) return cmd_commit(cm);
  return 1;
}
