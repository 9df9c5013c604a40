#pragma once

// Checks of the API's TLS files, so that a node with a bad certificate says which file is wrong
// and why at startup, instead of failing every handshake later (docs/SECURITY.md).

#include <optional>
#include <string>

namespace drover::api {

// nullopt when `cert_path` holds a PEM certificate (chain), `key_path` a PEM private key, and the
// key belongs to the certificate; else what is wrong, naming the file (never the key's bytes).
std::optional<std::string> checkTlsFiles(const std::string& cert_path, const std::string& key_path);

}  // namespace drover::api
