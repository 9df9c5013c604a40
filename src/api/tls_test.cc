// HTTPS on the API (HttpOptions::tls_cert/tls_key): a test certificate is made with the openssl
// CLI in a temp folder, a client that trusts it gets answers, a plain-HTTP client gets none, and
// bad files are refused at start() with an error naming the file.

#include "api/tls.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "api/batch_store.h"
#include "api/http.h"
#include "coord/fake/fake_coordination.h"
#include "tasks/layout.h"

namespace drover::api {
namespace {

namespace fs = std::filesystem;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/drover-tls-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(makeCertificate("a")) << "openssl could not make a test certificate";
    ASSERT_TRUE(makeCertificate("b"));
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  // A self-signed certificate for 127.0.0.1 and its key: DIR/NAME.crt, DIR/NAME.key.
  bool makeCertificate(const std::string& name) {
    std::string cmd =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
        "-addext subjectAltName=IP:127.0.0.1 -keyout " +
        path(name + ".key") + " -out " + path(name + ".crt") + " 2>/dev/null";
    return std::system(cmd.c_str()) == 0 && fs::exists(path(name + ".crt"));
  }
  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  std::unique_ptr<HttpServer> server(const std::string& cert, const std::string& key) {
    HttpOptions ho;
    ho.port = 0;
    ho.threads = 4;
    ho.tls_cert = cert;
    ho.tls_key = key;
    return std::make_unique<HttpServer>(store_, nullptr, ho);
  }

  std::string dir_;
  std::shared_ptr<coord::FakeServer> zk_ = std::make_shared<coord::FakeServer>();
  coord::FakeCoordination coord_{zk_};
  BatchStore store_{coord_, tasks::Layout("/drover")};
};

TEST_F(TlsTest, ServesHttpsToAClientThatTrustsTheCertificateAndNothingOverPlainHttp) {
  auto http = server(path("a.crt"), path("a.key"));
  auto port = http->start();
  ASSERT_TRUE(port) << port.error();

  httplib::SSLClient trusted("127.0.0.1", *port);
  trusted.set_ca_cert_path(path("a.crt").c_str());
  trusted.enable_server_certificate_verification(true);
  trusted.set_connection_timeout(5);
  auto ok = trusted.Get("/livez");
  ASSERT_TRUE(ok) << httplib::to_string(ok.error());
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body, "ok\n");

  httplib::SSLClient other_ca("127.0.0.1", *port);
  other_ca.set_ca_cert_path(path("b.crt").c_str());
  other_ca.enable_server_certificate_verification(true);
  auto refused = other_ca.Get("/livez");
  EXPECT_FALSE(refused);
  if (!refused) {
    EXPECT_EQ(refused.error(), httplib::Error::SSLServerVerification);
  }

  httplib::Client plain("127.0.0.1", *port);
  plain.set_read_timeout(5);
  auto no = plain.Get("/livez");
  EXPECT_FALSE(no && no->status == 200);
  http->stop();
}

TEST_F(TlsTest, BadFilesAreAClearErrorAtStart) {
  std::ofstream(path("junk.crt")) << "not a certificate\n";
  struct Case {
    std::string cert, key, expect;
  } cases[] = {
      {path("missing.crt"), path("a.key"),
       "cannot read the TLS certificate " + path("missing.crt")},
      {path("a.crt"), path("missing.key"), "cannot read the TLS key " + path("missing.key")},
      {path("junk.crt"), path("a.key"), "is not a PEM certificate"},
      {path("a.crt"), path("a.crt"), "is not an unencrypted PEM private key"},
      {path("a.crt"), path("b.key"), "does not belong to the certificate"},
      {path("a.crt"), "", "tls_cert and tls_key must be given together"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.cert + " / " + c.key);
    auto http = server(c.cert, c.key);
    auto port = http->start();
    ASSERT_FALSE(port);
    EXPECT_NE(port.error().find(c.expect), std::string::npos) << port.error();
    EXPECT_EQ(checkTlsFiles(c.cert, c.key).value_or(""), port.error());
  }
  EXPECT_EQ(checkTlsFiles(path("a.crt"), path("a.key")), std::nullopt);
}

}  // namespace
}  // namespace drover::api
