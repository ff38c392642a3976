#pragma once
// Move-only owners for the OpenSSL handles crypto/ uses, all declared here (house style rule 6).
// Private to crypto/: nothing outside this folder includes crypto/internal/.

#include <openssl/evp.h>

#include <memory>

namespace otd::crypto::internal {

template <class T, void (*Free)(T*)>
struct CFree {
  void operator()(T* p) const noexcept {
    if (p != nullptr) {
      Free(p);
    }
  }
};

using EvpMd = std::unique_ptr<EVP_MD, CFree<EVP_MD, EVP_MD_free>>;
using EvpMdCtx = std::unique_ptr<EVP_MD_CTX, CFree<EVP_MD_CTX, EVP_MD_CTX_free>>;
using EvpMac = std::unique_ptr<EVP_MAC, CFree<EVP_MAC, EVP_MAC_free>>;
using EvpMacCtx = std::unique_ptr<EVP_MAC_CTX, CFree<EVP_MAC_CTX, EVP_MAC_CTX_free>>;

}  // namespace otd::crypto::internal
