// usmc bench: TCP loopback and usmc SMC-D side by side, in one run.
#include <fmt/format.h>

#include <fstream>
#include <iostream>

#include "bench/pair_bench.h"
#include "tools/commands.h"

namespace usmc::tools {

void AddBenchCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "bench", "ping-pong, streaming and setup: TCP vs SMC-D, with ratios");
  auto cfg = std::make_shared<bench::Config>();
  auto json_path = std::make_shared<std::string>();
  auto quick = std::make_shared<bool>(false);
  auto plot_dir = std::make_shared<std::string>();
  cmd->add_option("-r,--repeats", cfg->repeats, "runs per workload (medians)")
      ->check(CLI::Range(1, 100));
  cmd->add_option("--rounds", cfg->pingpong_rounds, "ping-pong round trips")
      ->check(CLI::Range(10, 10000000));
  cmd->add_option("--stream-bytes", cfg->stream_bytes, "bytes per stream run")
      ->check(CLI::Range(uint64_t{1} << 20, uint64_t{1} << 40));
  cmd->add_option("--connections", cfg->setup_connections,
                  "connections for the setup workload")
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--dmb-size", cfg->dmb_size,
                  "SMC-D receive buffer per side, bytes (16 KiB .. 1 MiB)")
      ->check(CLI::Range(16 * 1024, 1024 * 1024));
  cmd->add_option("--client-cpu", cfg->client_cpu, "-1: no pinning");
  cmd->add_option("--server-cpu", cfg->server_cpu, "-1: no pinning");
  cmd->add_option("--json", *json_path, "also write the results as JSON");
  cmd->add_flag("--quick", *quick, "small sizes, 1 repeat (a smoke run)");
  cmd->add_option("--plot", *plot_dir,
                  "also stream at 1 KiB..256 KiB writes and draw latency CDFs "
                  "and throughput in DIR (gnuplot: PNG, SVG)");
  cmd->callback([cfg, json_path, quick, plot_dir] {
    if (!plot_dir->empty())
      cfg->stream_writes = {1024, 4096, 16384, 65536, 262144};
    if (*quick) {
      cfg->repeats = 1;
      cfg->pingpong_rounds = 2000;
      cfg->stream_bytes = 256 << 20;
      cfg->setup_connections = 50;
    }
    std::cout << "machine: " << bench::DescribeMachine() << "\n"
              << fmt::format(
                     "client on CPU {}, server on CPU {}; {} ping-pong rounds, "
                     "{} MiB per stream run\n\n",
                     cfg->client_cpu, cfg->server_cpu, cfg->pingpong_rounds,
                     cfg->stream_bytes >> 20);
    bench::PairBench b(*cfg);
    Result<bench::Report> r = b.Run();
    if (!r.ok()) {
      std::cerr << "usmc bench: " << r.status() << "\n";
      ExitWith(1);
    }
    bench::PrintTable(*r, std::cout);
    if (!json_path->empty()) {
      std::ofstream(*json_path) << bench::ToJson(*r).dump(2) << "\n";
      std::cout << "\nJSON written to " << *json_path << "\n";
    }
    if (!plot_dir->empty()) {
      const Status s = bench::WritePlots(*r, *plot_dir);  // makes the dir
      std::ofstream(*plot_dir + "/bench.json")
          << bench::ToJson(*r).dump(2) << "\n";
      if (!s.ok()) {
        std::cerr << "usmc bench: " << s << "\n";
        ExitWith(1);
      }
      std::cout << "\nplots written to " << *plot_dir
                << ": latency-cdf.{png,svg}, throughput.{png,svg}\n";
    }
    ExitWith(0);
  });
}

}  // namespace usmc::tools
