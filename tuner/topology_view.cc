#include "tuner/topology_view.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <utility>

namespace topotune {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

Link ThroughController(const WorkerLink& a, const WorkerLink& b) {
  return {std::min({a.up_bytes_s, a.down_bytes_s, b.up_bytes_s, b.down_bytes_s}),
          0.5 * (a.rtt_s + b.rtt_s)};
}

StatusOr<Link> DirectTransferLink(int64_t bytes, double seconds, double rtt_s, double min_seconds) {
  if (!(bytes > 0) || !(seconds >= 2 * rtt_s) || !(seconds >= min_seconds) || !(seconds > 0)) {
    char why[200];
    std::snprintf(why, sizeof(why),
                  "the transfer took %.6f s, under two round trips (%.6f s) or %.3f s: too short "
                  "to time",
                  seconds, 2 * rtt_s, min_seconds);
    return Status::InvalidArgument(why);
  }
  return Link{static_cast<double>(bytes) / (seconds - rtt_s), 0.5 * rtt_s};
}

void ApplyLinkTests(const std::vector<DirectLink>& tests, Target* target) {
  const auto replace = [&](const char* field, const std::pair<std::string, std::string>& sites,
                           Link* link) {
    if (sites.first.empty()) return;
    const auto pair = std::minmax(sites.first, sites.second);
    const DirectLink* test = nullptr;
    for (const DirectLink& d : tests) {
      if (std::minmax(d.from_site, d.to_site) == pair &&
          (test == nullptr || d.measured_at > test->measured_at)) {
        test = &d;
      }
    }
    if (test == nullptr) return;
    char how[300];
    std::snprintf(how, sizeof(how),
                  "%s measured by a link test between %s and %s (%.3g Mbit/s, %.3g declared; "
                  "latency the larger of %.3g ms measured and %.3g ms declared)",
                  field, sites.first.c_str(), sites.second.c_str(),
                  test->link.bandwidth_bytes_s * 8e-6, link->bandwidth_bytes_s * 8e-6,
                  test->link.latency_s * 1e3, link->latency_s * 1e3);
    *link = {test->link.bandwidth_bytes_s, std::max(test->link.latency_s, link->latency_s)};
    target->links_measured += (target->links_measured.empty() ? "" : "; ") + std::string(how);
  };
  if (target->kind == Target::Kind::kDataParallel && target->nodes > 1) {
    replace("inter_node", target->inter_node_sites, &target->inter_node);
  }
  if (target->kind == Target::Kind::kFederated) {
    replace("edge_cloud", target->edge_cloud_sites, &target->edge_cloud);
  }
}

TopologyView BuildTopologyView(const std::vector<WorkerRecord>& workers,
                               const std::map<std::string, WorkerLink>& links,
                               const std::vector<DirectLink>& direct, const Topology* declared) {
  std::map<std::string, SiteView> sites;
  std::map<std::string, std::vector<const WorkerLink*>> measured;
  for (const WorkerRecord& w : workers) {
    if (w.state == "offline") continue;
    SiteView& site = sites[w.device.site];
    site.site = w.device.site;
    ++site.classes[DeviceClassOf(w.device)];
    site.workers.push_back(w.id);
    auto link = links.find(w.id);
    if (link != links.end()) measured[w.device.site].push_back(&link->second);
  }
  if (declared != nullptr) {
    for (const auto& [name, classes] : declared->sites) {
      SiteView& site = sites[name];
      site.site = name;
      site.declared = classes;
    }
  }
  for (auto& [name, site] : sites) {
    std::sort(site.workers.begin(), site.workers.end());
    const std::vector<const WorkerLink*>& m = measured[name];
    site.measured = static_cast<int>(m.size());
    if (m.empty()) continue;
    auto median = [&](double WorkerLink::*field) {
      std::vector<double> v;
      for (const WorkerLink* l : m) v.push_back(l->*field);
      return Median(std::move(v));
    };
    site.median.rtt_s = median(&WorkerLink::rtt_s);
    site.median.down_bytes_s = median(&WorkerLink::down_bytes_s);
    site.median.up_bytes_s = median(&WorkerLink::up_bytes_s);
    site.median.pad_bytes = m.front()->pad_bytes;
    site.median.measured_at = median(&WorkerLink::measured_at);
  }

  TopologyView view;
  for (auto& [name, site] : sites) view.sites.push_back(std::move(site));
  auto measured_between = [&](const std::string& a, const std::string& b) -> std::optional<Link> {
    const SiteView *sa = nullptr, *sb = nullptr;
    for (const SiteView& s : view.sites) {
      if (s.site == a) sa = &s;
      if (s.site == b) sb = &s;
    }
    if (sa == nullptr || sb == nullptr || sa->measured == 0 || sb->measured == 0) {
      return std::nullopt;
    }
    return ThroughController(sa->median, sb->median);
  };
  // The latest link test per pair of sites.
  std::map<std::pair<std::string, std::string>, const DirectLink*> tested;
  for (const DirectLink& d : direct) {
    const auto key = std::minmax(d.from_site, d.to_site);
    const DirectLink*& latest = tested[{key.first, key.second}];
    if (latest == nullptr || d.measured_at >= latest->measured_at) latest = &d;
  }
  auto direct_between = [&](const std::string& a,
                            const std::string& b) -> std::optional<DirectLink> {
    auto it = tested.find({a, b});
    if (it == tested.end()) return std::nullopt;
    return *it->second;
  };
  std::set<std::pair<std::string, std::string>> seen;
  if (declared != nullptr) {
    for (const Topology::SiteLink& l : declared->links) {
      const auto key = std::minmax(l.a, l.b);
      if (!seen.insert(key).second) continue;
      view.links.push_back({key.first, key.second, l.link, measured_between(key.first, key.second),
                            direct_between(key.first, key.second)});
    }
  }
  // Every other pair of named sites that both have measured workers.
  for (size_t i = 0; i < view.sites.size(); ++i) {
    for (size_t j = i + 1; j < view.sites.size(); ++j) {
      const std::string& a = view.sites[i].site;
      const std::string& b = view.sites[j].site;
      if (a.empty() || b.empty() || seen.count({a, b}) > 0) continue;
      std::optional<Link> m = measured_between(a, b);
      if (m) {
        seen.insert({a, b});
        view.links.push_back({a, b, std::nullopt, m, direct_between(a, b)});
      }
    }
  }
  // Pairs with a link test and nothing else (their workers have left since).
  for (const auto& [key, d] : tested) {
    if (seen.count(key) == 0)
      view.links.push_back({key.first, key.second, std::nullopt, std::nullopt, *d});
  }
  return view;
}

}  // namespace topotune
