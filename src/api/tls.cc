#include "api/tls.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace drover::api {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;

// The last OpenSSL error as text, and the queue emptied (it is per thread).
std::string opensslError() {
  unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "no PEM data found";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

}  // namespace

std::optional<std::string> checkTlsFiles(const std::string& cert_path,
                                         const std::string& key_path) {
  if (cert_path.empty() || key_path.empty()) {
    return std::string("tls_cert and tls_key must be given together");
  }
  File cert_file(std::fopen(cert_path.c_str(), "r"));
  if (!cert_file) {
    return fmt::format("cannot read the TLS certificate {}: {}", cert_path, std::strerror(errno));
  }
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      PEM_read_X509(cert_file.get(), nullptr, nullptr, nullptr), &X509_free);
  if (!cert) {
    return fmt::format("the TLS certificate {} is not a PEM certificate ({})", cert_path,
                       opensslError());
  }
  File key_file(std::fopen(key_path.c_str(), "r"));
  if (!key_file) {
    return fmt::format("cannot read the TLS key {}: {}", key_path, std::strerror(errno));
  }
  // No passphrase callback: an encrypted key cannot be used by a node started unattended.
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_PrivateKey(
          key_file.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr),
      &EVP_PKEY_free);
  if (!key) {
    return fmt::format("the TLS key {} is not an unencrypted PEM private key ({})", key_path,
                       opensslError());
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return fmt::format("the TLS key {} does not belong to the certificate {}", key_path, cert_path);
  }
  return std::nullopt;
}

}  // namespace drover::api
