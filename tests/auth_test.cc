#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tuner/sha256.h"
#include "api/tokens.h"
#include "storage/store.h"

namespace topotune {
namespace {

namespace fs = std::filesystem;

constexpr double kNow = 1700000000.0;

// An operator's own admin secret, as topotuned --admin-token-file would read it.
const std::string kOperatorSecret = "correct-horse-battery-staple-0123456789";

// A fresh directory per test for the database file, removed with everything in it.
class TempDatabase {
 public:
  TempDatabase() {
    std::string pattern = (fs::path(::testing::TempDir()) / "auth_test.XXXXXX").string();
    const char* dir = mkdtemp(pattern.data());
    EXPECT_NE(dir, nullptr) << "mkdtemp " << pattern;
    if (dir != nullptr) dir_ = dir;
  }
  ~TempDatabase() {
    std::error_code error;
    fs::remove_all(dir_, error);
  }
  TempDatabase(const TempDatabase&) = delete;
  TempDatabase& operator=(const TempDatabase&) = delete;

  std::string path() const { return (dir_ / "topotune.db").string(); }

 private:
  fs::path dir_;
};

// A store on its own database file and an authority over it.
class AuthorityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StatusOr<std::unique_ptr<Store>> store = Store::Open(db_.path());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    authority_ = std::make_unique<TokenAuthority>(store_.get(), [this] { return clock_; });
  }

  IssuedToken CreateOrDie(Role role, const std::string& name = "") {
    StatusOr<IssuedToken> issued = authority_->Create(role, name, kNow);
    EXPECT_TRUE(issued.ok()) << issued.status().ToString();
    return issued.ok() ? std::move(issued).value() : IssuedToken{};
  }

  std::vector<TokenRecord> ListOrDie() {
    StatusOr<std::vector<TokenRecord>> tokens = authority_->List();
    EXPECT_TRUE(tokens.ok()) << tokens.status().ToString();
    return tokens.ok() ? std::move(tokens).value() : std::vector<TokenRecord>{};
  }

  TempDatabase db_;
  double clock_ = kNow;
  std::unique_ptr<Store> store_;
  std::unique_ptr<TokenAuthority> authority_;
};

std::string SecretOf(const std::string& text) { return text.substr(text.find('.') + 1); }

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void ExpectUnauthenticated(const StatusOr<Principal>& principal, const std::string& message) {
  ASSERT_FALSE(principal.ok());
  EXPECT_EQ(principal.status().code(), Status::Code::kUnauthenticated)
      << principal.status().ToString();
  if (!message.empty()) {
    EXPECT_EQ(principal.status().message(), message);
  }
}

TEST(Sha256, FipsVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklm"
                      "nopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PaddingBoundaries) {
  // Lengths around the 56-byte point where the length no longer fits the last block.
  const std::vector<std::pair<size_t, std::string>> cases = {
      {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
      {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
      {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
      {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
      {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
      {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
  };
  for (const auto& [length, digest] : cases) {
    EXPECT_EQ(Sha256Hex(std::string(length, 'a')), digest) << length << " bytes";
  }
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes.push_back(static_cast<char>(b));
  EXPECT_EQ(Sha256Hex(all_bytes),
            "40aff2e9d2d8922e47afd4648e6967497158785fbd1da870e7110266bf944880");
}

TEST(Status, AuthCodesHaveWireNames) {
  EXPECT_EQ(Status::Unauthenticated("x").code(), Status::Code::kUnauthenticated);
  EXPECT_EQ(Status::PermissionDenied("x").code(), Status::Code::kPermissionDenied);
  EXPECT_STREQ(Status::CodeName(Status::Code::kUnauthenticated), "UNAUTHENTICATED");
  EXPECT_STREQ(Status::CodeName(Status::Code::kPermissionDenied), "PERMISSION_DENIED");
}

TEST(Role, NamesRoundTrip) {
  for (Role role : {Role::kAdmin, Role::kUser, Role::kWorker}) {
    std::optional<Role> parsed = ParseRole(RoleName(role));
    ASSERT_TRUE(parsed.has_value()) << RoleName(role);
    EXPECT_EQ(*parsed, role);
  }
  EXPECT_STREQ(RoleName(Role::kAdmin), "admin");
  EXPECT_STREQ(RoleName(Role::kUser), "user");
  EXPECT_STREQ(RoleName(Role::kWorker), "worker");
  EXPECT_FALSE(ParseRole("Admin").has_value());
  EXPECT_FALSE(ParseRole("").has_value());
}

TEST(TokenText, ParsesTheIssuedForm) {
  const std::string secret(64, 'a');
  StatusOr<std::pair<int64_t, std::string>> parsed = ParseTokenText("tt12." + secret);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->first, 12);
  EXPECT_EQ(parsed->second, secret);

  const std::string mixed = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  parsed = ParseTokenText("tt999999999999999999." + mixed);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->first, 999999999999999999);
  EXPECT_EQ(parsed->second, mixed);
}

TEST(TokenText, RejectsEverythingElseWithoutEchoingTheSecret) {
  const std::string secret = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";
  ASSERT_EQ(secret.size(), 64u);
  std::string upper = secret;
  upper[1] = 'E';
  const std::vector<std::string> bad = {
      "",
      "tt",
      "tt1",
      "tt1.",
      "tt." + secret,
      "tt0." + secret,
      "tt01." + secret,
      "tt-1." + secret,
      "tt+1." + secret,
      "tt1x." + secret,
      "tt1234567890123456789." + secret,  // 19 digits
      "TT1." + secret,
      "t1." + secret,
      "xtt1." + secret,
      " tt1." + secret,
      "tt1." + secret + " ",
      "tt1." + secret + "\n",
      "tt1." + secret + "0",
      "tt1." + secret.substr(1),
      "tt1." + upper,
      "tt1:" + secret,
      "tt1.." + secret.substr(1),
      "tt1." + secret.substr(0, 32) + "g" + secret.substr(33),
      std::string("tt1.") + std::string(64, 'a') + std::string(10000, 'a'),
  };
  for (const std::string& text : bad) {
    StatusOr<std::pair<int64_t, std::string>> parsed = ParseTokenText(text);
    ASSERT_FALSE(parsed.ok()) << "accepted '" << text << "'";
    EXPECT_EQ(parsed.status().code(), Status::Code::kInvalidArgument);
    EXPECT_EQ(parsed.status().message().find(secret.substr(0, 16)), std::string::npos)
        << parsed.status().message();
  }
}

TEST(ConstantTimeEquals, ComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "xbc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_FALSE(ConstantTimeEquals("ab", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  EXPECT_FALSE(ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0c", 3)));
}

TEST_F(AuthorityTest, CreatedTokensAuthenticateWithTheirRole) {
  for (Role role : {Role::kAdmin, Role::kUser, Role::kWorker}) {
    IssuedToken issued = CreateOrDie(role);
    EXPECT_EQ(issued.text, "tt" + std::to_string(issued.record.id) + "." + SecretOf(issued.text));
    StatusOr<std::pair<int64_t, std::string>> parsed = ParseTokenText(issued.text);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    EXPECT_EQ(parsed->first, issued.record.id);
    EXPECT_EQ(issued.record.name, RoleName(role));  // the default name
    EXPECT_EQ(issued.record.hash_hex, Sha256Hex(parsed->second));
    EXPECT_FALSE(issued.record.external);

    StatusOr<Principal> principal = authority_->Authenticate(issued.text);
    ASSERT_TRUE(principal.ok()) << principal.status().ToString();
    EXPECT_EQ(principal->token_id, issued.record.id);
    EXPECT_EQ(principal->name, RoleName(role));
    EXPECT_EQ(principal->role, role);
  }
  IssuedToken named = CreateOrDie(Role::kWorker, "jetson-01_a.b");
  StatusOr<Principal> principal = authority_->Authenticate(named.text);
  ASSERT_TRUE(principal.ok()) << principal.status().ToString();
  EXPECT_EQ(principal->name, "jetson-01_a.b");
  EXPECT_EQ(principal->role, Role::kWorker);

  std::vector<TokenRecord> tokens = ListOrDie();
  ASSERT_EQ(tokens.size(), 4u);
  for (size_t i = 1; i < tokens.size(); ++i) EXPECT_LT(tokens[i - 1].id, tokens[i].id);
  EXPECT_EQ(tokens[3].created_at, kNow);
}

TEST_F(AuthorityTest, SecretsAreFreshRandomHex) {
  IssuedToken a = CreateOrDie(Role::kUser);
  IssuedToken b = CreateOrDie(Role::kUser);
  EXPECT_NE(SecretOf(a.text), SecretOf(b.text));
  EXPECT_NE(a.record.hash_hex, b.record.hash_hex);
  // 256 random bits leave no secret without a digit or a letter in practice.
  const std::string secret = SecretOf(a.text);
  EXPECT_NE(secret.find_first_of("0123456789"), std::string::npos);
  EXPECT_NE(secret.find_first_of("abcdef"), std::string::npos);
}

TEST_F(AuthorityTest, CreateRejectsBadNames) {
  for (const std::string& name : {std::string(65, 'n'), std::string("a b"), std::string("a/b"),
                                  std::string("émile"), std::string("x\n")}) {
    StatusOr<IssuedToken> issued = authority_->Create(Role::kUser, name, kNow);
    ASSERT_FALSE(issued.ok()) << "accepted '" << name << "'";
    EXPECT_EQ(issued.status().code(), Status::Code::kInvalidArgument);
  }
  EXPECT_TRUE(authority_->Create(Role::kUser, std::string(64, 'n'), kNow).ok());
  EXPECT_EQ(ListOrDie().size(), 1u);
}

TEST_F(AuthorityTest, WrongSecretAndUnknownIdAreUnauthenticatedAlike) {
  IssuedToken issued = CreateOrDie(Role::kUser);
  std::string wrong = issued.text;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  ExpectUnauthenticated(authority_->Authenticate(wrong), "invalid or revoked token");

  const std::string unknown =
      "tt" + std::to_string(issued.record.id + 1) + "." + SecretOf(issued.text);
  ExpectUnauthenticated(authority_->Authenticate(unknown), "invalid or revoked token");

  // The secret alone is not a token (nor an external one: none was provided).
  ExpectUnauthenticated(authority_->Authenticate(SecretOf(issued.text)),
                        "invalid or revoked token");
}

TEST_F(AuthorityTest, MissingAndMalformedAreUnauthenticated) {
  CreateOrDie(Role::kUser);
  ExpectUnauthenticated(authority_->Authenticate(""), "");
  ExpectUnauthenticated(authority_->Authenticate("tt1"), "");
  ExpectUnauthenticated(authority_->Authenticate("Bearer"), "");
  ExpectUnauthenticated(authority_->Authenticate(std::string(300, 'a')), "");
  StatusOr<Principal> spaced = authority_->Authenticate("this has spaces and is long enough to be");
  ExpectUnauthenticated(spaced, "");
  EXPECT_EQ(spaced.status().message().find("spaces"), std::string::npos);
}

TEST_F(AuthorityTest, RevokedTokensAreUnauthenticated) {
  IssuedToken kept = CreateOrDie(Role::kUser);
  IssuedToken revoked = CreateOrDie(Role::kUser);
  ASSERT_TRUE(authority_->Authenticate(revoked.text).ok());
  Status status = authority_->Revoke(revoked.record.id, kNow + 5);
  ASSERT_TRUE(status.ok()) << status.ToString();
  ExpectUnauthenticated(authority_->Authenticate(revoked.text), "invalid or revoked token");
  EXPECT_TRUE(authority_->Authenticate(kept.text).ok());

  std::vector<TokenRecord> tokens = ListOrDie();
  ASSERT_EQ(tokens.size(), 2u);
  EXPECT_EQ(tokens[0].revoked_at, 0.0);
  EXPECT_EQ(tokens[1].revoked_at, kNow + 5);

  Status again = authority_->Revoke(revoked.record.id, kNow + 6);
  EXPECT_EQ(again.code(), Status::Code::kFailedPrecondition) << again.ToString();
  Status missing = authority_->Revoke(revoked.record.id + 100, kNow);
  EXPECT_EQ(missing.code(), Status::Code::kNotFound) << missing.ToString();
  EXPECT_EQ(ListOrDie()[1].revoked_at, kNow + 5);
}

TEST_F(AuthorityTest, TokensSurviveReopeningTheDatabase) {
  IssuedToken issued = CreateOrDie(Role::kWorker);
  authority_.reset();
  store_.reset();
  StatusOr<std::unique_ptr<Store>> store = Store::Open(db_.path());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  TokenAuthority authority(store->get());
  StatusOr<Principal> principal = authority.Authenticate(issued.text);
  ASSERT_TRUE(principal.ok()) << principal.status().ToString();
  EXPECT_EQ(principal->role, Role::kWorker);
}

TEST_F(AuthorityTest, UseIsRecordedAtMostOnceAMinute) {
  IssuedToken issued = CreateOrDie(Role::kUser);
  EXPECT_EQ(ListOrDie()[0].last_used_at, 0.0);
  clock_ = kNow + 10;
  ASSERT_TRUE(authority_->Authenticate(issued.text).ok());
  EXPECT_EQ(ListOrDie()[0].last_used_at, kNow + 10);
  clock_ = kNow + 65;
  ASSERT_TRUE(authority_->Authenticate(issued.text).ok());
  EXPECT_EQ(ListOrDie()[0].last_used_at, kNow + 10);
  clock_ = kNow + 70;
  ASSERT_TRUE(authority_->Authenticate(issued.text).ok());
  EXPECT_EQ(ListOrDie()[0].last_used_at, kNow + 70);

  // A second authority (a restarted controller) goes by the stored time.
  double other_clock = kNow + 100;
  TokenAuthority other(store_.get(), [&] { return other_clock; });
  ASSERT_TRUE(other.Authenticate(issued.text).ok());
  EXPECT_EQ(ListOrDie()[0].last_used_at, kNow + 70);
  other_clock = kNow + 131;
  ASSERT_TRUE(other.Authenticate(issued.text).ok());
  EXPECT_EQ(ListOrDie()[0].last_used_at, kNow + 131);
}

TEST_F(AuthorityTest, EnsureAdminCreatesOneAdminOnAFreshDatabase) {
  CreateOrDie(Role::kUser);  // not an admin
  StatusOr<std::optional<std::string>> first = authority_->EnsureAdmin("", kNow);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_TRUE(first->has_value());
  StatusOr<Principal> admin = authority_->Authenticate(**first);
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  EXPECT_EQ(admin->role, Role::kAdmin);
  EXPECT_EQ(admin->name, "admin");

  StatusOr<std::optional<std::string>> second = authority_->EnsureAdmin("", kNow + 1);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_FALSE(second->has_value());
  std::vector<TokenRecord> tokens = ListOrDie();
  ASSERT_EQ(tokens.size(), 2u);
  EXPECT_EQ(tokens[1].role, Role::kAdmin);
  EXPECT_FALSE(tokens[1].external);

  // With the only admin revoked, the next start issues a new one.
  ASSERT_TRUE(authority_->Revoke(admin->token_id, kNow + 2).ok());
  StatusOr<std::optional<std::string>> third = authority_->EnsureAdmin("", kNow + 3);
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  ASSERT_TRUE(third->has_value());
  EXPECT_NE(**third, **first);
  EXPECT_TRUE(authority_->Authenticate(**third).ok());
  EXPECT_EQ(ListOrDie().size(), 3u);
}

TEST_F(AuthorityTest, ProvidedAdminTokenAuthenticatesAsAdmin) {
  StatusOr<std::optional<std::string>> ensured = authority_->EnsureAdmin(kOperatorSecret, kNow);
  ASSERT_TRUE(ensured.ok()) << ensured.status().ToString();
  EXPECT_FALSE(ensured->has_value());  // the operator has the text already

  std::vector<TokenRecord> tokens = ListOrDie();
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_TRUE(tokens[0].external);
  EXPECT_EQ(tokens[0].role, Role::kAdmin);
  EXPECT_EQ(tokens[0].name, "admin");
  EXPECT_EQ(tokens[0].hash_hex, Sha256Hex(kOperatorSecret));

  StatusOr<Principal> admin = authority_->Authenticate(kOperatorSecret);
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  EXPECT_EQ(admin->role, Role::kAdmin);
  EXPECT_EQ(admin->token_id, tokens[0].id);

  std::string other = kOperatorSecret;
  other.back() = 'X';
  ExpectUnauthenticated(authority_->Authenticate(other), "invalid or revoked token");
  // An external token is not reachable as tt<ID>.<SECRET>.
  ExpectUnauthenticated(
      authority_->Authenticate("tt" + std::to_string(tokens[0].id) + "." + tokens[0].hash_hex),
      "invalid or revoked token");

  // The same text again stores nothing; no fresh admin is issued either.
  ensured = authority_->EnsureAdmin(kOperatorSecret, kNow + 1);
  ASSERT_TRUE(ensured.ok()) << ensured.status().ToString();
  ensured = authority_->EnsureAdmin("", kNow + 1);
  ASSERT_TRUE(ensured.ok()) << ensured.status().ToString();
  EXPECT_FALSE(ensured->has_value());
  EXPECT_EQ(ListOrDie().size(), 1u);
}

TEST_F(AuthorityTest, ChangingTheProvidedTokenAddsAnAdmin) {
  StatusOr<std::optional<std::string>> fresh = authority_->EnsureAdmin("", kNow);
  ASSERT_TRUE(fresh.ok() && fresh->has_value());
  ASSERT_TRUE(authority_->EnsureAdmin(kOperatorSecret, kNow).ok());
  const std::string rotated = kOperatorSecret + "-rotated";
  ASSERT_TRUE(authority_->EnsureAdmin(rotated, kNow).ok());
  EXPECT_EQ(ListOrDie().size(), 3u);
  for (const std::string& text : {**fresh, kOperatorSecret, rotated}) {
    StatusOr<Principal> admin = authority_->Authenticate(text);
    ASSERT_TRUE(admin.ok()) << admin.status().ToString();
    EXPECT_EQ(admin->role, Role::kAdmin);
  }
}

TEST_F(AuthorityTest, ProvidedAdminTokenMustBeLongVisibleAscii) {
  for (const std::string& text : {std::string(31, 'x'), std::string(257, 'x'),
                                  std::string(20, 'x') + " " + std::string(20, 'x'),
                                  std::string(40, 'x') + "\t", std::string(40, 'x') + "\xc3\xa9"}) {
    StatusOr<std::optional<std::string>> ensured = authority_->EnsureAdmin(text, kNow);
    ASSERT_FALSE(ensured.ok()) << text.size() << " characters accepted";
    EXPECT_EQ(ensured.status().code(), Status::Code::kInvalidArgument);
    EXPECT_EQ(ensured.status().message().find("xxxxxxxx"), std::string::npos)
        << ensured.status().message();
  }
  EXPECT_TRUE(ListOrDie().empty());
  EXPECT_TRUE(authority_->EnsureAdmin(std::string(32, 'x'), kNow).ok());
  EXPECT_TRUE(authority_->EnsureAdmin(std::string(256, 'y'), kNow).ok());
  EXPECT_EQ(ListOrDie().size(), 2u);
}

TEST_F(AuthorityTest, ProvidedIssuedFormMustBeAnActiveAdminHere) {
  StatusOr<std::optional<std::string>> fresh = authority_->EnsureAdmin("", kNow);
  ASSERT_TRUE(fresh.ok() && fresh->has_value());
  // The printed admin token saved to the file: accepted, not stored twice.
  StatusOr<std::optional<std::string>> again = authority_->EnsureAdmin(**fresh, kNow + 1);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_FALSE(again->has_value());
  EXPECT_EQ(ListOrDie().size(), 1u);

  IssuedToken user = CreateOrDie(Role::kUser);
  StatusOr<std::optional<std::string>> not_admin = authority_->EnsureAdmin(user.text, kNow);
  ASSERT_FALSE(not_admin.ok());
  EXPECT_EQ(not_admin.status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(not_admin.status().message().find(SecretOf(user.text)), std::string::npos);
  EXPECT_EQ(ListOrDie().size(), 2u);
}

TEST_F(AuthorityTest, RevokedProvidedTokenIsNotStoredAgain) {
  ASSERT_TRUE(authority_->EnsureAdmin(kOperatorSecret, kNow).ok());
  const int64_t id = ListOrDie()[0].id;
  ASSERT_TRUE(authority_->Revoke(id, kNow + 1).ok());
  ExpectUnauthenticated(authority_->Authenticate(kOperatorSecret), "invalid or revoked token");
  StatusOr<std::optional<std::string>> ensured = authority_->EnsureAdmin(kOperatorSecret, kNow);
  ASSERT_FALSE(ensured.ok());
  EXPECT_EQ(ensured.status().code(), Status::Code::kFailedPrecondition);
  ExpectUnauthenticated(authority_->Authenticate(kOperatorSecret), "invalid or revoked token");
  EXPECT_EQ(ListOrDie().size(), 1u);
}

TEST_F(AuthorityTest, DatabaseHoldsHashesNotSecrets) {
  std::vector<std::string> secrets;
  for (Role role : {Role::kAdmin, Role::kUser, Role::kWorker}) {
    secrets.push_back(SecretOf(CreateOrDie(role).text));
  }
  StatusOr<std::optional<std::string>> fresh = authority_->EnsureAdmin("", kNow);
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  ASSERT_TRUE(authority_->EnsureAdmin(kOperatorSecret, kNow).ok());
  secrets.push_back(kOperatorSecret);

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(db_.path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT * FROM api_tokens", -1, &stmt, nullptr), SQLITE_OK);
  int rows = 0;
  std::vector<std::string> hashes;
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    ++rows;
    for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
      const unsigned char* text = sqlite3_column_text(stmt, c);
      const std::string value = text != nullptr ? reinterpret_cast<const char*>(text) : "";
      if (std::string(sqlite3_column_name(stmt, c)) == "hash_hex") hashes.push_back(value);
      for (const std::string& secret : secrets) {
        EXPECT_EQ(value.find(secret), std::string::npos)
            << "column " << sqlite3_column_name(stmt, c) << " holds a secret";
      }
    }
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  EXPECT_EQ(rows, 4);
  ASSERT_EQ(hashes.size(), 4u);
  for (size_t i = 0; i < secrets.size(); ++i) EXPECT_EQ(hashes[i], Sha256Hex(secrets[i]));

  // Nor anywhere in the files, free pages and the write-ahead log included.
  for (const std::string& path : {db_.path(), db_.path() + "-wal"}) {
    const std::string bytes = ReadFileBytes(path);
    for (const std::string& secret : secrets) {
      EXPECT_EQ(bytes.find(secret), std::string::npos) << path;
    }
  }
}

TEST_F(AuthorityTest, ConcurrentAuthenticationsAllSucceed) {
  std::vector<IssuedToken> issued;
  for (int i = 0; i < 4; ++i) issued.push_back(CreateOrDie(Role::kWorker));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        if (!authority_->Authenticate(issued[(t + i) % issued.size()].text).ok()) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace topotune
