// tokenizer_json.cpp — Hugging Face tokenizer.json <-> TokenizerSpec.
//
// Accepted (docs/tokenizer.md): model BPE with merges as "a b" strings or ["a", "b"] pairs;
// pre_tokenizer ByteLevel, or Sequence[Split(GPT-2 regex, Isolated), ByteLevel(use_regex:false)];
// normalizer null, NFC or a Sequence holding at most NFC; post_processor null or ByteLevel;
// decoder null or ByteLevel; truncation and padding null. Anything else is rejected with the key
// path, what was found and the byte offset / line / column in the file.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/json.h"
#include "data/tokenizer.h"

namespace cmoe {

namespace {

// The spellings of GPT-2's pre-tokenization regex that Split may carry (all the same language).
constexpr const char* kGpt2Patterns[] = {
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
    "'(?:[sdmt]|ll|ve|re)| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
};

using json::Value;

class Reader {
 public:
  Reader(std::string_view text, const std::string& source) : text_(text), source_(source) {}

  absl::Status error(const std::string& path, const Value* at, const std::string& what) const {
    std::string where = at ? absl::StrCat(" (", json::describe_offset(text_, at->offset()), ")") : "";
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", path, ": ", what, where));
  }

  absl::Status expect(const std::string& path, const Value* v, json::Type t) const {
    if (!v) return error(path, nullptr, absl::StrCat("missing (expected ", json::type_name(t), ")"));
    if (v->type() != t) {
      return error(path, v, absl::StrCat("expected ", json::type_name(t), ", found ", json::type_name(v->type())));
    }
    return absl::OkStatus();
  }

  // Optional bool: absent or null gives `fallback`.
  absl::StatusOr<bool> get_bool(const Value& obj, const std::string& path, const char* key, bool fallback) const {
    const Value* v = obj.find(key);
    if (!v || v->is_null()) return fallback;
    CMOE_RETURN_IF_ERROR(expect(path + "." + key, v, json::Type::kBool));
    return v->as_bool();
  }

  absl::StatusOr<std::string> get_type(const Value& obj, const std::string& path) const {
    const Value* t = obj.find("type");
    CMOE_RETURN_IF_ERROR(expect(path + ".type", t, json::Type::kString));
    return t->as_string();
  }

  // Keys that must be absent, null, false or "" (features cmoe does not implement).
  absl::Status require_off(const Value& obj, const std::string& path, std::initializer_list<const char*> keys) const {
    for (const char* key : keys) {
      const Value* v = obj.find(key);
      if (!v || v->is_null()) continue;
      if (v->is_bool() && !v->as_bool()) continue;
      if (v->is_string() && v->as_string().empty()) continue;
      return error(path + "." + key, v, "must be null or false: cmoe does not implement this option");
    }
    return absl::OkStatus();
  }

  absl::Status read_model(const Value& root, TokenizerSpec* spec) const {
    const Value* model = root.find("model");
    CMOE_RETURN_IF_ERROR(expect("model", model, json::Type::kObject));
    const Value* type = model->find("type");
    if (type) {
      CMOE_RETURN_IF_ERROR(expect("model.type", type, json::Type::kString));
      if (type->as_string() != "BPE") {
        return error("model.type", type, absl::StrCat("\"", type->as_string(), "\" is not supported (cmoe implements BPE)"));
      }
    }
    CMOE_RETURN_IF_ERROR(require_off(*model, "model", {"dropout", "unk_token", "continuing_subword_prefix",
                                                       "end_of_word_suffix", "fuse_unk", "byte_fallback",
                                                       "ignore_merges"}));
    const Value* vocab = model->find("vocab");
    CMOE_RETURN_IF_ERROR(expect("model.vocab", vocab, json::Type::kObject));
    spec->vocab.reserve(vocab->as_object().size());
    for (const json::Member& m : vocab->as_object()) {
      const std::string path = absl::StrCat("model.vocab[\"", m.key, "\"]");
      if (!m.value.is_int() || m.value.as_int() < 0 || m.value.as_int() >= (int64_t{1} << 30)) {
        return error(path, &m.value, "expected a token id (integer in [0, 2^30))");
      }
      spec->vocab.emplace_back(m.key, static_cast<int32_t>(m.value.as_int()));
    }
    const Value* merges = model->find("merges");
    CMOE_RETURN_IF_ERROR(expect("model.merges", merges, json::Type::kArray));
    const auto& ms = merges->as_array();
    spec->merges.reserve(ms.size());
    spec->merges_as_pairs = ms.empty() || ms[0].is_array();
    for (size_t k = 0; k < ms.size(); ++k) {
      const Value& m = ms[k];
      const std::string path = absl::StrCat("model.merges[", k, "]");
      if (m.is_string()) {
        const std::string& s = m.as_string();
        size_t sp = s.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 == s.size() || s.find(' ', sp + 1) != std::string::npos) {
          return error(path, &m, absl::StrCat("expected \"left right\" (two tokens, one space), found \"", s, "\""));
        }
        spec->merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (m.is_array() && m.as_array().size() == 2 && m.as_array()[0].is_string() &&
                 m.as_array()[1].is_string()) {
        spec->merges.emplace_back(m.as_array()[0].as_string(), m.as_array()[1].as_string());
      } else {
        return error(path, &m, absl::StrCat("expected a string \"a b\" or a pair [\"a\", \"b\"], found ",
                                            m.is_array() ? "an array that is not two strings" : json::type_name(m.type())));
      }
    }
    return absl::OkStatus();
  }

  absl::Status read_byte_level(const Value& bl, const std::string& path, TokenizerSpec* spec) const {
    CMOE_ASSIGN_OR_RETURN(spec->add_prefix_space, get_bool(bl, path, "add_prefix_space", false));
    CMOE_ASSIGN_OR_RETURN(spec->trim_offsets, get_bool(bl, path, "trim_offsets", true));
    CMOE_ASSIGN_OR_RETURN(spec->use_regex, get_bool(bl, path, "use_regex", true));
    return absl::OkStatus();
  }

  absl::Status read_pre_tokenizer(const Value& root, TokenizerSpec* spec) const {
    const Value* pt = root.find("pre_tokenizer");
    CMOE_RETURN_IF_ERROR(expect("pre_tokenizer", pt, json::Type::kObject));
    CMOE_ASSIGN_OR_RETURN(std::string type, get_type(*pt, "pre_tokenizer"));
    if (type == "ByteLevel") return read_byte_level(*pt, "pre_tokenizer", spec);
    if (type != "Sequence") {
      return error("pre_tokenizer.type", pt->find("type"),
                   absl::StrCat("\"", type, "\" is not supported (cmoe implements ByteLevel and Sequence[Split, ByteLevel])"));
    }
    const Value* seq = pt->find("pretokenizers");
    CMOE_RETURN_IF_ERROR(expect("pre_tokenizer.pretokenizers", seq, json::Type::kArray));
    const auto& items = seq->as_array();
    if (items.size() == 1 && items[0].is_object()) {  // Sequence[ByteLevel]
      CMOE_ASSIGN_OR_RETURN(std::string t0, get_type(items[0], "pre_tokenizer.pretokenizers[0]"));
      if (t0 == "ByteLevel") return read_byte_level(items[0], "pre_tokenizer.pretokenizers[0]", spec);
    }
    if (items.size() != 2 || !items[0].is_object() || !items[1].is_object()) {
      return error("pre_tokenizer.pretokenizers", seq, "expected [Split, ByteLevel] (two objects)");
    }
    const std::string p0 = "pre_tokenizer.pretokenizers[0]", p1 = "pre_tokenizer.pretokenizers[1]";
    CMOE_ASSIGN_OR_RETURN(std::string t0, get_type(items[0], p0));
    CMOE_ASSIGN_OR_RETURN(std::string t1, get_type(items[1], p1));
    if (t0 != "Split") return error(p0 + ".type", items[0].find("type"), absl::StrCat("expected \"Split\", found \"", t0, "\""));
    if (t1 != "ByteLevel") return error(p1 + ".type", items[1].find("type"), absl::StrCat("expected \"ByteLevel\", found \"", t1, "\""));
    const Value* pattern = items[0].find("pattern");
    CMOE_RETURN_IF_ERROR(expect(p0 + ".pattern", pattern, json::Type::kObject));
    const Value* regex = pattern->find("Regex");
    CMOE_RETURN_IF_ERROR(expect(p0 + ".pattern.Regex", regex, json::Type::kString));
    bool known = false;
    for (const char* k : kGpt2Patterns) known |= regex->as_string() == k;
    if (!known) {
      return error(p0 + ".pattern.Regex", regex,
                   absl::StrCat("only GPT-2's pre-tokenization regex is supported, found \"", regex->as_string(), "\""));
    }
    const Value* behavior = items[0].find("behavior");
    if (behavior && !(behavior->is_string() && behavior->as_string() == "Isolated")) {
      return error(p0 + ".behavior", behavior, "expected \"Isolated\"");
    }
    CMOE_ASSIGN_OR_RETURN(bool invert, get_bool(items[0], p0, "invert", false));
    if (invert) return error(p0 + ".invert", items[0].find("invert"), "expected false");
    CMOE_RETURN_IF_ERROR(read_byte_level(items[1], p1, spec));
    if (spec->use_regex) {
      return error(p1 + ".use_regex", items[1].find("use_regex"),
                   "must be false after a Split (the regex would be applied twice)");
    }
    spec->use_regex = true;
    spec->split_then_byte_level = true;
    spec->split_pattern = regex->as_string();
    return absl::OkStatus();
  }

  absl::Status read_normalizer(const Value& root, TokenizerSpec* spec) const {
    const Value* n = root.find("normalizer");
    if (!n || n->is_null()) return absl::OkStatus();
    CMOE_RETURN_IF_ERROR(expect("normalizer", n, json::Type::kObject));
    CMOE_ASSIGN_OR_RETURN(std::string type, get_type(*n, "normalizer"));
    if (type == "NFC") {
      spec->normalizer = Normalizer::kNFC;
      return absl::OkStatus();
    }
    if (type == "Sequence") {
      const Value* seq = n->find("normalizers");
      CMOE_RETURN_IF_ERROR(expect("normalizer.normalizers", seq, json::Type::kArray));
      spec->normalizer_in_sequence = true;
      const auto& items = seq->as_array();
      if (items.size() > 1) return error("normalizer.normalizers", seq, "cmoe implements a Sequence of at most one NFC");
      for (size_t k = 0; k < items.size(); ++k) {
        const std::string path = absl::StrCat("normalizer.normalizers[", k, "]");
        CMOE_RETURN_IF_ERROR(expect(path, &items[k], json::Type::kObject));
        CMOE_ASSIGN_OR_RETURN(std::string t, get_type(items[k], path));
        if (t != "NFC") return error(path + ".type", items[k].find("type"), absl::StrCat("\"", t, "\" is not supported (cmoe implements NFC)"));
        spec->normalizer = Normalizer::kNFC;
      }
      return absl::OkStatus();
    }
    return error("normalizer.type", n->find("type"),
                 absl::StrCat("\"", type, "\" is not supported (cmoe implements null, NFC and Sequence[NFC])"));
  }

  // post_processor / decoder: null or ByteLevel. Returns whether it was ByteLevel.
  absl::StatusOr<bool> read_byte_level_or_null(const Value& root, const char* key) const {
    const Value* v = root.find(key);
    if (!v || v->is_null()) return false;
    CMOE_RETURN_IF_ERROR(expect(key, v, json::Type::kObject));
    CMOE_ASSIGN_OR_RETURN(std::string type, get_type(*v, key));
    if (type != "ByteLevel") {
      return error(absl::StrCat(key, ".type"), v->find("type"),
                   absl::StrCat("\"", type, "\" is not supported (cmoe implements null and ByteLevel)"));
    }
    return true;
  }

  absl::Status read_added_tokens(const Value& root, TokenizerSpec* spec) const {
    const Value* added = root.find("added_tokens");
    if (!added || added->is_null()) return absl::OkStatus();
    CMOE_RETURN_IF_ERROR(expect("added_tokens", added, json::Type::kArray));
    const auto& items = added->as_array();
    for (size_t k = 0; k < items.size(); ++k) {
      const std::string path = absl::StrCat("added_tokens[", k, "]");
      CMOE_RETURN_IF_ERROR(expect(path, &items[k], json::Type::kObject));
      const Value& a = items[k];
      AddedToken tok;
      const Value* id = a.find("id");
      if (!id || !id->is_int() || id->as_int() < 0 || id->as_int() >= (int64_t{1} << 30)) {
        return error(path + ".id", id ? id : &a, "expected a token id (integer in [0, 2^30))");
      }
      tok.id = static_cast<int32_t>(id->as_int());
      const Value* content = a.find("content");
      CMOE_RETURN_IF_ERROR(expect(path + ".content", content, json::Type::kString));
      tok.content = content->as_string();
      if (tok.content.empty()) return error(path + ".content", content, "must not be empty");
      CMOE_ASSIGN_OR_RETURN(tok.single_word, get_bool(a, path, "single_word", false));
      CMOE_ASSIGN_OR_RETURN(tok.lstrip, get_bool(a, path, "lstrip", false));
      CMOE_ASSIGN_OR_RETURN(tok.rstrip, get_bool(a, path, "rstrip", false));
      CMOE_ASSIGN_OR_RETURN(tok.special, get_bool(a, path, "special", false));
      CMOE_ASSIGN_OR_RETURN(tok.normalized, get_bool(a, path, "normalized", !tok.special));
      spec->added_tokens.push_back(std::move(tok));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<TokenizerSpec> read(const Value& root) const {
    if (!root.is_object()) return error("(top level)", &root, absl::StrCat("expected object, found ", json::type_name(root.type())));
    for (const char* key : {"truncation", "padding"}) {
      const Value* v = root.find(key);
      if (v && !v->is_null()) return error(key, v, "must be null: cmoe does not truncate or pad");
    }
    TokenizerSpec spec;
    CMOE_RETURN_IF_ERROR(read_model(root, &spec));
    CMOE_RETURN_IF_ERROR(read_pre_tokenizer(root, &spec));
    CMOE_RETURN_IF_ERROR(read_normalizer(root, &spec));
    CMOE_RETURN_IF_ERROR(read_added_tokens(root, &spec));
    CMOE_ASSIGN_OR_RETURN(spec.post_processor_byte_level, read_byte_level_or_null(root, "post_processor"));
    CMOE_ASSIGN_OR_RETURN(spec.decoder_byte_level, read_byte_level_or_null(root, "decoder"));
    return spec;
  }

 private:
  std::string_view text_;
  const std::string& source_;
};

Value byte_level_value(bool add_prefix_space, bool trim_offsets, bool use_regex) {
  Value v = Value::object();
  v.set("type", Value::string("ByteLevel"));
  v.set("add_prefix_space", Value::boolean(add_prefix_space));
  v.set("trim_offsets", Value::boolean(trim_offsets));
  v.set("use_regex", Value::boolean(use_regex));
  return v;
}

}  // namespace

absl::StatusOr<Tokenizer> Tokenizer::from_json(std::string_view json_text, const std::string& source) {
  auto root = json::parse(json_text);
  if (!root.ok()) return absl::InvalidArgumentError(absl::StrCat(source, ": ", root.status().message()));
  Reader reader(json_text, source);
  CMOE_ASSIGN_OR_RETURN(TokenizerSpec spec, reader.read(*root));
  auto tok = create(std::move(spec));
  if (!tok.ok()) return absl::InvalidArgumentError(absl::StrCat(source, ": ", tok.status().message()));
  return tok;
}

absl::StatusOr<Tokenizer> Tokenizer::load(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {  // an ifstream opens a directory and reads nothing
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory; expected a tokenizer.json file (for a "
                                                   "Hugging Face model directory, give ", path, "/tokenizer.json)"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open tokenizer file ", path));
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return from_json(buf.str(), path);
}

std::string Tokenizer::to_json() const {
  const TokenizerSpec& s = spec();
  Value root = Value::object();
  root.set("version", Value::string("1.0"));
  root.set("truncation", Value());
  root.set("padding", Value());
  Value added = Value::array();
  std::vector<const AddedToken*> sorted_added;
  for (const AddedToken& a : s.added_tokens) sorted_added.push_back(&a);
  std::stable_sort(sorted_added.begin(), sorted_added.end(),
                   [](const AddedToken* a, const AddedToken* b) { return a->id < b->id; });
  for (const AddedToken* a : sorted_added) {
    Value t = Value::object();
    t.set("id", Value::integer(a->id));
    t.set("content", Value::string(a->content));
    t.set("single_word", Value::boolean(a->single_word));
    t.set("lstrip", Value::boolean(a->lstrip));
    t.set("rstrip", Value::boolean(a->rstrip));
    t.set("normalized", Value::boolean(a->normalized));
    t.set("special", Value::boolean(a->special));
    added.push_back(std::move(t));
  }
  root.set("added_tokens", std::move(added));
  if (s.normalizer == Normalizer::kNone && !s.normalizer_in_sequence) {
    root.set("normalizer", Value());
  } else {
    Value nfc = Value::object();
    nfc.set("type", Value::string("NFC"));
    if (s.normalizer_in_sequence) {
      Value seq = Value::object();
      seq.set("type", Value::string("Sequence"));
      Value items = Value::array();
      if (s.normalizer == Normalizer::kNFC) items.push_back(std::move(nfc));
      seq.set("normalizers", std::move(items));
      root.set("normalizer", std::move(seq));
    } else {
      root.set("normalizer", std::move(nfc));
    }
  }
  if (s.split_then_byte_level) {
    Value split = Value::object();
    split.set("type", Value::string("Split"));
    Value pattern = Value::object();
    pattern.set("Regex", Value::string(s.split_pattern));
    split.set("pattern", std::move(pattern));
    split.set("behavior", Value::string("Isolated"));
    split.set("invert", Value::boolean(false));
    Value seq = Value::object();
    seq.set("type", Value::string("Sequence"));
    Value items = Value::array();
    items.push_back(std::move(split));
    items.push_back(byte_level_value(s.add_prefix_space, s.trim_offsets, false));
    seq.set("pretokenizers", std::move(items));
    root.set("pre_tokenizer", std::move(seq));
  } else {
    root.set("pre_tokenizer", byte_level_value(s.add_prefix_space, s.trim_offsets, s.use_regex));
  }
  root.set("post_processor", s.post_processor_byte_level ? byte_level_value(s.add_prefix_space, s.trim_offsets, true) : Value());
  root.set("decoder", s.decoder_byte_level ? byte_level_value(true, true, true) : Value());
  Value model = Value::object();
  model.set("type", Value::string("BPE"));
  model.set("dropout", Value());
  model.set("unk_token", Value());
  model.set("continuing_subword_prefix", Value());
  model.set("end_of_word_suffix", Value());
  model.set("fuse_unk", Value::boolean(false));
  model.set("byte_fallback", Value::boolean(false));
  std::vector<const std::pair<std::string, int32_t>*> by_id;
  for (const auto& e : s.vocab) by_id.push_back(&e);
  std::sort(by_id.begin(), by_id.end(), [](const auto* a, const auto* b) { return a->second < b->second; });
  Value vocab = Value::object();
  for (const auto* e : by_id) vocab.set(e->first, Value::integer(e->second));
  model.set("vocab", std::move(vocab));
  Value merges = Value::array();
  for (const auto& [a, b] : s.merges) {
    if (s.merges_as_pairs) {
      Value pair = Value::array();
      pair.push_back(Value::string(a));
      pair.push_back(Value::string(b));
      merges.push_back(std::move(pair));
    } else {
      merges.push_back(Value::string(a + " " + b));
    }
  }
  model.set("merges", std::move(merges));
  root.set("model", std::move(model));
  std::string out = json::serialize(root, 2);
  out.push_back('\n');
  return out;
}

absl::Status Tokenizer::save(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  const std::string text = to_json();
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot create ", tmp));
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.flush();
    if (!out) return absl::DataLossError(absl::StrCat("error writing ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace cmoe
