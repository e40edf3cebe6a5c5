#include "api/topology_json.h"

#include <cmath>
#include <set>

#include "api/json_fields.h"
#include "api/json_input.h"
#include "tuner/target.h"

namespace topotune {
namespace {

using nlohmann::json;

constexpr size_t kMaxSites = 64;
constexpr size_t kMaxLinks = 256;
constexpr size_t kMaxTargets = 64;
constexpr size_t kMaxNameBytes = 64;

Status Invalid(const std::string& path, const std::string& what) {
  return Status::InvalidArgument(path + " " + what);
}

// A positive, finite number at `key` (required when `required`).
Status Positive(Fields& f, const std::string& key, bool required, double* out) {
  const json* v = f.Find(key);
  if (v == nullptr) {
    return required ? Invalid(f.Name(key), "is required") : Status::OK();
  }
  if (!v->is_number() || !(v->get<double>() > 0) || !std::isfinite(v->get<double>())) {
    return Invalid(f.Name(key), "must be a number > 0, got " + Fields::Describe(*v));
  }
  *out = v->get<double>();
  return Status::OK();
}

Status Name(Fields& f, const std::string& key, bool required, std::string* out) {
  TOPOTUNE_RETURN_IF_ERROR(f.String(key, out, kMaxNameBytes));
  if (required && out->empty()) return Invalid(f.Name(key), "is required (a non-empty name)");
  return Status::OK();
}

// {"bandwidth_mbit_s": X, "latency_ms": Y}, latency optional (0).
Status InlineLink(const json& j, const std::string& path, Link* link) {
  Fields f(j, path);
  double mbit = 0, ms = 0;
  TOPOTUNE_RETURN_IF_ERROR(Positive(f, "bandwidth_mbit_s", true, &mbit));
  const json* latency = f.Find("latency_ms");
  if (latency != nullptr) {
    if (!latency->is_number() || !(latency->get<double>() >= 0) ||
        !std::isfinite(latency->get<double>())) {
      return Invalid(f.Name("latency_ms"),
                     "must be a number >= 0, got " + Fields::Describe(*latency));
    }
    ms = latency->get<double>();
  }
  TOPOTUNE_RETURN_IF_ERROR(f.NoOthers());
  link->bandwidth_bytes_s = mbit * 1e6 / 8;
  link->latency_s = ms / 1e3;
  return Status::OK();
}

const Topology::SiteLink* FindLink(const Topology& t, const std::string& a, const std::string& b) {
  for (const Topology::SiteLink& l : t.links) {
    if ((l.a == a && l.b == b) || (l.a == b && l.b == a)) return &l;
  }
  return nullptr;
}

// A link field: inline, or ["site-a", "site-b"] naming a declared link (then `sites`, when
// given, gets the two names).
Status LinkField(Fields& f, const std::string& key, const Topology& t, bool required, Link* link,
                 std::pair<std::string, std::string>* sites = nullptr) {
  const json* v = f.Find(key);
  if (v == nullptr) return required ? Invalid(f.Name(key), "is required (a link)") : Status::OK();
  if (v->is_object()) return InlineLink(*v, f.Name(key), link);
  if (v->is_array() && v->size() == 2 && (*v)[0].is_string() && (*v)[1].is_string()) {
    const std::string a = (*v)[0].get<std::string>(), b = (*v)[1].get<std::string>();
    const Topology::SiteLink* l = FindLink(t, a, b);
    if (l == nullptr) {
      return Invalid(f.Name(key), "names no declared link between " + SafeText(a, 64) + " and " +
                                      SafeText(b, 64));
    }
    *link = l->link;
    if (sites != nullptr) *sites = {a, b};
    return Status::OK();
  }
  return Invalid(f.Name(key),
                 "must be {\"bandwidth_mbit_s\", \"latency_ms\"} or [site, site], got " +
                     Fields::Describe(*v));
}

Status ParseTarget(const json& j, const std::string& path, const Topology& t, Target* target) {
  if (!j.is_object()) return Invalid(path, "must be an object, got " + Fields::Describe(j));
  Fields f(j, path);
  TOPOTUNE_RETURN_IF_ERROR(Name(f, "name", true, &target->name));
  std::string kind = "single";
  TOPOTUNE_RETURN_IF_ERROR(f.String("kind", &kind, kMaxNameBytes));
  if (kind == "single") {
    target->kind = Target::Kind::kSingle;
  } else if (kind == "data_parallel") {
    target->kind = Target::Kind::kDataParallel;
  } else if (kind == "federated") {
    target->kind = Target::Kind::kFederated;
  } else {
    return Invalid(f.Name("kind"),
                   "must be single, data_parallel or federated, got " + SafeText(kind, 64));
  }
  TOPOTUNE_RETURN_IF_ERROR(Name(f, "class", true, &target->device_class));
  TOPOTUNE_RETURN_IF_ERROR(Name(f, "site", true, &target->site));
  auto site = t.sites.find(target->site);
  if (site == t.sites.end()) {
    return Invalid(f.Name("site"), "names no site of \"sites\": " + SafeText(target->site, 64));
  }
  int needed = 1;
  if (target->kind == Target::Kind::kDataParallel) {
    TOPOTUNE_RETURN_IF_ERROR(f.IntAs("devices", 1, kMaxDevices, &target->devices));
    TOPOTUNE_RETURN_IF_ERROR(f.IntAs("nodes", 1, kMaxDevices, &target->nodes));
    if (target->devices % target->nodes != 0) {
      return Invalid(f.Name("devices"), "(" + std::to_string(target->devices) +
                                            ") must spread evenly over nodes (" +
                                            std::to_string(target->nodes) + ")");
    }
    TOPOTUNE_RETURN_IF_ERROR(
        LinkField(f, "intra_node", t, target->devices > target->nodes, &target->intra_node));
    TOPOTUNE_RETURN_IF_ERROR(LinkField(f, "inter_node", t, target->nodes > 1, &target->inter_node,
                                       &target->inter_node_sites));
    const json* overlap = f.Find("overlap");
    if (overlap != nullptr) {
      if (!overlap->is_number() || !(overlap->get<double>() >= 0 && overlap->get<double>() <= 1)) {
        return Invalid(f.Name("overlap"),
                       "must be a number in [0, 1], got " + Fields::Describe(*overlap));
      }
      target->overlap = overlap->get<double>();
    }
    needed = target->devices;
  } else if (target->kind == Target::Kind::kFederated) {
    TOPOTUNE_RETURN_IF_ERROR(
        f.IntAs("clients_per_edge", 1, kMaxDevices, &target->clients_per_edge));
    TOPOTUNE_RETURN_IF_ERROR(f.IntAs("edges", 1, kMaxDevices, &target->edges));
    TOPOTUNE_RETURN_IF_ERROR(f.IntAs("local_epochs", 1, 1000, &target->local_epochs));
    if (target->clients_per_edge < 1 || target->edges < 1) {
      return Invalid(path, "(federated) needs clients_per_edge and edges >= 1");
    }
    TOPOTUNE_RETURN_IF_ERROR(LinkField(f, "client_edge", t, true, &target->client_edge));
    TOPOTUNE_RETURN_IF_ERROR(
        LinkField(f, "edge_cloud", t, true, &target->edge_cloud, &target->edge_cloud_sites));
  }
  TOPOTUNE_RETURN_IF_ERROR(f.NoOthers());
  if (target->kind == Target::Kind::kFederated) {
    // The clients hold their own data; the class must exist somewhere.
    bool declared = false;
    for (const auto& [name, classes] : t.sites) declared |= classes.count(target->device_class) > 0;
    if (!declared) {
      return Invalid(f.Name("class"),
                     "is declared at no site: " + SafeText(target->device_class, 64));
    }
    return Status::OK();
  }
  auto count = site->second.find(target->device_class);
  const int have = count == site->second.end() ? 0 : count->second;
  if (have < needed) {
    return Invalid(path, "needs " + std::to_string(needed) + " " +
                             SafeText(target->device_class, 64) + " at " +
                             SafeText(target->site, 64) + "; the site declares " +
                             std::to_string(have));
  }
  if (!t.data_site.empty() && t.data_site != target->site) {
    const Topology::SiteLink* l = FindLink(t, t.data_site, target->site);
    if (l == nullptr) {
      return Invalid(path, "trains at " + SafeText(target->site, 64) + " but the data is at " +
                               SafeText(t.data_site, 64) + ", and no link joins them");
    }
    target->data_bytes = t.data_bytes;
    target->data_link = l->link;
  }
  return Status::OK();
}

}  // namespace

StatusOr<Topology> TopologyFromJson(const json& j) {
  if (!j.is_object()) return Status::InvalidArgument("a topology must be a JSON object");
  Topology t;
  Fields f(j, "");
  TOPOTUNE_RETURN_IF_ERROR(Name(f, "name", false, &t.name));

  const json* sites = nullptr;
  TOPOTUNE_RETURN_IF_ERROR(f.Required("sites", &sites, "an object of site -> {class: count}"));
  if (!sites->is_object() || sites->empty() || sites->size() > kMaxSites) {
    return Invalid("sites", "must be an object of 1 to " + std::to_string(kMaxSites) +
                                " sites, each {class: count}");
  }
  for (auto it = sites->begin(); it != sites->end(); ++it) {
    const std::string path = "sites." + SafeText(it.key(), 64);
    if (it.key().empty() || it.key().size() > kMaxNameBytes) {
      return Invalid(path, "needs a name of 1 to 64 bytes");
    }
    if (!it->is_object() || it->size() > kMaxSites) {
      return Invalid(path, "must be an object of device class -> count");
    }
    std::map<std::string, int>& classes = t.sites[it.key()];
    for (auto c = it->begin(); c != it->end(); ++c) {
      if (c.key().empty() || c.key().size() > kMaxNameBytes || !c->is_number_integer() ||
          c->get<int64_t>() < 0 || c->get<int64_t>() > kMaxDevices) {
        return Invalid(path + "." + SafeText(c.key(), 64),
                       "must be a device count in [0, " + std::to_string(kMaxDevices) + "]");
      }
      classes[c.key()] = static_cast<int>(c->get<int64_t>());
    }
  }

  const json* links = f.Find("links");
  if (links != nullptr) {
    if (!links->is_array() || links->size() > kMaxLinks) {
      return Invalid("links",
                     "must be an array of at most " + std::to_string(kMaxLinks) + " links");
    }
    for (size_t i = 0; i < links->size(); ++i) {
      const std::string path = "links[" + std::to_string(i) + "]";
      const json& l = (*links)[i];
      if (!l.is_object()) return Invalid(path, "must be an object");
      const json* between = l.contains("between") ? &l["between"] : nullptr;
      if (between == nullptr || !between->is_array() || between->size() != 2 ||
          !(*between)[0].is_string() || !(*between)[1].is_string()) {
        return Invalid(path + ".between", "must be [site, site]");
      }
      Topology::SiteLink link;
      link.a = (*between)[0].get<std::string>();
      link.b = (*between)[1].get<std::string>();
      for (const std::string& s : {link.a, link.b}) {
        if (!t.sites.count(s)) {
          return Invalid(path + ".between", "names no site of \"sites\": " + SafeText(s, 64));
        }
      }
      if (link.a == link.b) return Invalid(path + ".between", "must join two different sites");
      if (FindLink(t, link.a, link.b) != nullptr) {
        return Invalid(path, "declares the link between " + link.a + " and " + link.b + " twice");
      }
      json rest = l;
      rest.erase("between");
      TOPOTUNE_RETURN_IF_ERROR(InlineLink(rest, path, &link.link));
      t.links.push_back(link);
    }
  }

  const json* data = nullptr;
  TOPOTUNE_RETURN_IF_ERROR(f.Object("data", &data));
  if (data != nullptr) {
    Fields d(*data, "data");
    TOPOTUNE_RETURN_IF_ERROR(Name(d, "site", true, &t.data_site));
    if (!t.sites.count(t.data_site)) {
      return Invalid("data.site", "names no site of \"sites\": " + SafeText(t.data_site, 64));
    }
    TOPOTUNE_RETURN_IF_ERROR(Positive(d, "bytes", true, &t.data_bytes));
    TOPOTUNE_RETURN_IF_ERROR(d.NoOthers());
  }
  TOPOTUNE_RETURN_IF_ERROR(Positive(f, "model_bytes", false, &t.workload.model_bytes));
  int64_t samples = 0;
  TOPOTUNE_RETURN_IF_ERROR(f.Int("train_samples", 1, kMaxTrainSamples, &samples));
  t.workload.train_samples = samples;

  const json* targets = nullptr;
  TOPOTUNE_RETURN_IF_ERROR(f.Required("targets", &targets, "an array of targets"));
  if (!targets->is_array() || targets->empty() || targets->size() > kMaxTargets) {
    return Invalid("targets",
                   "must be an array of 1 to " + std::to_string(kMaxTargets) + " targets");
  }
  std::set<std::string> names;
  for (size_t i = 0; i < targets->size(); ++i) {
    Target target;
    TOPOTUNE_RETURN_IF_ERROR(
        ParseTarget((*targets)[i], "targets[" + std::to_string(i) + "]", t, &target));
    if (!names.insert(target.name).second) {
      return Invalid("targets[" + std::to_string(i) + "].name",
                     "repeats " + SafeText(target.name, 64) + ": target names must be unique");
    }
    t.targets.push_back(std::move(target));
  }
  TOPOTUNE_RETURN_IF_ERROR(f.NoOthers());
  return t;
}

StatusOr<Topology> ParseTopology(const std::string& text) {
  StatusOr<json> j = ParseUntrustedJson(text);
  if (!j.ok()) return j.status();
  return TopologyFromJson(*j);
}

}  // namespace topotune
