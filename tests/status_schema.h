// tests/status_schema.h: a small JSON Schema validator for the usmc status
// output, enough for the keywords docs/status-schema.json uses, and the
// schema itself (from $USMC_SOURCE_DIR/docs).
//
//   EXPECT_EQ(LoadSchema().Check(json::parse(out)), "");  // "" = valid
#ifndef USMC_TESTS_STATUS_SCHEMA_H_
#define USMC_TESTS_STATUS_SCHEMA_H_

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

namespace usmc::status_test {

using nlohmann::json;

// ---- a small JSON Schema validator: the keywords docs/status-schema.json
// uses ($ref to #/$defs, oneOf, allOf, type, enum, required, properties,
// additionalProperties: false, items, minimum, maximum, pattern) ----
class Validator {
 public:
  explicit Validator(json root) : root_(std::move(root)) {}
  // Empty string: valid. Else where and why it is not.
  std::string Check(const json& v) const { return Check(root_, v, "$"); }

 private:
  std::string Check(const json& s, const json& v, const std::string& at) const {
    if (s.contains("$ref")) {
      const std::string ref = s["$ref"];
      const std::string prefix = "#/$defs/";
      if (ref.rfind(prefix, 0) != 0) return at + ": unsupported $ref " + ref;
      if (std::string e =
              Check(root_["$defs"][ref.substr(prefix.size())], v, at);
          !e.empty())
        return e;
    }
    if (s.contains("oneOf")) {
      int ok = 0;
      std::string errors;
      for (const json& sub : s["oneOf"]) {
        std::string e = Check(sub, v, at);
        if (e.empty())
          ++ok;
        else
          errors += " [" + e + "]";
      }
      if (ok != 1)
        return at + ": matches " + std::to_string(ok) + " of oneOf" + errors;
    }
    if (s.contains("allOf"))
      for (const json& sub : s["allOf"])
        if (std::string e = Check(sub, v, at); !e.empty()) return e;
    if (s.contains("type") && !TypeOk(s["type"], v))
      return at + ": not of type " + s["type"].dump() + ": " + v.dump();
    if (s.contains("enum")) {
      bool found = false;
      for (const json& e : s["enum"]) found = found || e == v;
      if (!found) return at + ": " + v.dump() + " not in " + s["enum"].dump();
    }
    if (v.is_number()) {
      if (s.contains("minimum") && v.get<double>() < s["minimum"].get<double>())
        return at + ": below minimum";
      if (s.contains("maximum") && v.get<double>() > s["maximum"].get<double>())
        return at + ": above maximum";
    }
    if (v.is_string() && s.contains("pattern") &&
        !std::regex_search(v.get<std::string>(),
                           std::regex(s["pattern"].get<std::string>())))
      return at + ": " + v.dump() + " does not match " + s["pattern"].dump();
    if (v.is_object()) {
      if (s.contains("required"))
        for (const json& k : s["required"])
          if (!v.contains(k.get<std::string>()))
            return at + ": missing " + k.get<std::string>();
      for (auto it = v.begin(); it != v.end(); ++it) {
        const bool known =
            s.contains("properties") && s["properties"].contains(it.key());
        if (known) {
          if (std::string e = Check(s["properties"][it.key()], it.value(),
                                    at + "." + it.key());
              !e.empty())
            return e;
        } else if (s.contains("additionalProperties") &&
                   s["additionalProperties"] == false) {
          return at + ": unexpected member " + it.key();
        }
      }
    }
    if (v.is_array() && s.contains("items"))
      for (size_t i = 0; i < v.size(); ++i)
        if (std::string e =
                Check(s["items"], v[i], at + "[" + std::to_string(i) + "]");
            !e.empty())
          return e;
    return "";
  }

  static bool TypeOk(const json& t, const json& v) {
    const std::string type = t;
    if (type == "object") return v.is_object();
    if (type == "array") return v.is_array();
    if (type == "string") return v.is_string();
    if (type == "integer") return v.is_number_integer();
    if (type == "number") return v.is_number();
    if (type == "boolean") return v.is_boolean();
    return false;
  }

  json root_;
};

inline Validator LoadSchema() {
  const char* src = std::getenv("USMC_SOURCE_DIR");
  std::ifstream in(std::string(src ? src : ".") + "/docs/status-schema.json");
  EXPECT_TRUE(in.good()) << "docs/status-schema.json not found";
  return Validator(json::parse(in));
}

}  // namespace usmc::status_test

#endif  // USMC_TESTS_STATUS_SCHEMA_H_
