// bench/plot.cc: WritePlots (pair_bench.h): the report as data files and a
// gnuplot script, then gnuplot draws PNG and SVG. gnuplot (Debian's
// gnuplot-nox) is run, not linked: without it the data and script stay.
#include <sys/stat.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "bench/pair_bench.h"

namespace usmc::bench {
namespace {

std::string SizeLabel(uint32_t bytes) {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) == 0)
    return std::to_string(bytes / (1024 * 1024)) + " MiB";
  if (bytes >= 1024 && bytes % 1024 == 0)
    return std::to_string(bytes / 1024) + " KiB";
  return std::to_string(bytes) + " B";
}

const char* Tag(Transport t) { return t == Transport::kTcp ? "tcp" : "smcd"; }

// Colour-blind safe pair, and a dash pattern too: the two transports stay
// apart in greyscale print.
constexpr const char* kStyleTcp = "lw 2.5 lc rgb '#d95f02' dt 2";
constexpr const char* kStyleSmc = "lw 2.5 lc rgb '#1b9e77' dt 1";

}  // namespace

Status WritePlots(const Report& r, const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    return Status::FromErrno(errno, "mkdir " + dir);
  std::vector<uint32_t> sizes;  // ping-pong message sizes, in order
  std::map<uint32_t, std::pair<double, double>> stream;  // write -> GB/s
  for (const Measurement& m : r.results) {
    if (!m.quantiles_us.empty()) {
      std::ofstream f(dir + "/latency-" + std::to_string(m.message_bytes) +
                      "-" + Tag(m.transport) + ".dat");
      f << "# round-trip latency (us)  fraction of round trips\n";
      const size_t n = m.quantiles_us.size();
      for (size_t q = 0; q < n; ++q)
        f << m.quantiles_us[q] << " "
          << static_cast<double>(q) / static_cast<double>(n - 1) << "\n";
      if (m.transport == Transport::kTcp) sizes.push_back(m.message_bytes);
    } else if (m.gbytes_per_s > 0) {
      auto& [tcp, smc] = stream[m.message_bytes];
      (m.transport == Transport::kTcp ? tcp : smc) = m.gbytes_per_s;
    }
  }
  {
    std::ofstream f(dir + "/throughput.dat");
    f << "# write size (bytes)  TCP (GB/s)  SMC-D (GB/s)\n";
    for (const auto& [write, gbs] : stream)
      f << write << " " << gbs.first << " " << gbs.second << "\n";
  }
  std::ostringstream xtics;  // binary sizes, labelled as such
  xtics << "set xtics (";
  for (auto it = stream.begin(); it != stream.end(); ++it)
    xtics << (it == stream.begin() ? "" : ", ") << "'" << SizeLabel(it->first)
          << "' " << it->first;
  xtics << ")";
  std::ostringstream gp;
  gp << "# usmc bench --plot: gnuplot script (run in " << dir << ")\n"
     << "machine = \"" << r.machine << "\"\n"
     << "set encoding utf8\nset grid\nset key bottom right box opaque\n";
  const std::string runs =
      r.config.repeats == 1
          ? std::string("one run")
          : "medians of " + std::to_string(r.config.repeats) + " runs";
  const std::string shared =
      std::to_string(r.config.pingpong_rounds) + " round trips, " + runs;
  for (const char* ext : {"png", "svg"}) {
    const bool png = std::string(ext) == "png";
    const int panels = static_cast<int>(sizes.size());
    gp << (png ? "set terminal pngcairo enhanced font 'DejaVu Sans,13' "
               : "set terminal svg enhanced font 'DejaVu Sans,13' ")
       << "size " << 480 * std::max(panels, 1) << ",460\n"
       << "set output 'latency-cdf." << ext << "'\n"
       << "set multiplot layout 1," << std::max(panels, 1)
       << " title \"ping-pong round-trip latency CDF, TCP loopback vs SMC-D "
          "(usmc bench: "
       << shared << ")\\n\".machine\n"
       << "set logscale x\nset xlabel 'round-trip latency (µs, log scale)'\n"
       << "set ylabel 'fraction of round trips'\nset yrange [0:1]\n"
       << "set format x '%g'\n";
    for (uint32_t size : sizes) {
      const std::string s = std::to_string(size);
      gp << "set title '" << SizeLabel(size) << " messages'\n"
         << "plot 'latency-" << s << "-smcd.dat' with lines " << kStyleSmc
         << " title 'SMC-D (usmc)', 'latency-" << s << "-tcp.dat' with lines "
         << kStyleTcp << " title 'TCP loopback'\n";
    }
    gp << "unset multiplot\nunset logscale\nunset format\nunset yrange\n"
       << "set yrange [0:*]\n"
       << "set terminal " << (png ? "pngcairo" : "svg")
       << " enhanced font 'DejaVu Sans,13' size 900,500\n"
       << "set output 'throughput." << ext << "'\n"
       << "set title \"one-way stream throughput against write size\\n"
          "(usmc bench: "
       << (r.config.stream_bytes >> 20) << " MiB per run, " << runs
       << ") \".machine\n"
       << "set xrange [" << (stream.empty() ? 1 : stream.begin()->first) / 1.5
       << ":" << (stream.empty() ? 2 : stream.rbegin()->first) * 1.5 << "]\n"
       << "set logscale x 2\nset xlabel 'write size (bytes, log scale)'\n"
       << "set ylabel 'throughput (GB/s)'\nset key top left box opaque\n"
       << xtics.str() << "\n"
       << "plot 'throughput.dat' using 1:3 with linespoints pt 7 ps 1.3 "
       << kStyleSmc << " title 'SMC-D (usmc)', "
       << "'throughput.dat' using 1:2 with linespoints pt 5 ps 1.3 "
       << kStyleTcp << " title 'TCP loopback'\n"
       << "unset logscale\nunset format\nset xtics auto\nset xrange [*:*]\n"
       << "set key bottom right\n";
  }
  const std::string script = dir + "/plots.gp";
  std::ofstream(script) << gp.str();
  const std::string cmd = "cd '" + dir + "' && gnuplot plots.gp";
  const int st = std::system(cmd.c_str());
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
    return Status(StatusCode::kUnavailable,
                  "gnuplot failed (apt-get install gnuplot-nox); data and " +
                      script + " are in " + dir);
  return OkStatus();
}

}  // namespace usmc::bench
