#pragma once
// What the API does so that a browser can never turn stored data into active content on the
// vault's origin, or be talked into a cross-site state change (hostile review, issue 14 item 1).
//
//  * Every answer carries kApiContentSecurityPolicy (no script, no subresource, no framing, and
//    `sandbox`: a document rendered from it gets an opaque origin, so it cannot read the vault's
//    cookies or make same-origin requests). Routes with pages of their own (a console) set their
//    own policy first; the server adds this one only where none is set.
//  * A detokenized payload keeps its bytes and Content-Type exactly; unless its media type is in
//    a short list a browser displays without running anything (text/plain, JSON, raster images,
//    audio, video, ...), it is also sent as `Content-Disposition: attachment` (html, xhtml, svg,
//    xml, javascript, pdf and anything unknown or malformed are downloaded, never rendered).
//  * A state-changing request (POST, PUT, PATCH, DELETE) authenticated by the `login` cookie is
//    refused when it comes from another site: an `Origin` that is neither the configured
//    public_url's origin nor the request's own Host (`Origin: null`, sent by sandboxed and
//    opaque documents, is refused too), or `Sec-Fetch-Site: cross-site`. Requests without these
//    headers (curl, server-side clients) are not browsers and pass.

#include <optional>
#include <string>
#include <string_view>

#include "api/http.h"

namespace otd::api {

inline constexpr std::string_view kApiContentSecurityPolicy =
    "default-src 'none'; sandbox; frame-ancestors 'none'";

// Whether a payload of this Content-Type may be shown inline by a browser (see above). Compares
// the media type without parameters, case-insensitively.
bool IsInlineSafeMediaType(std::string_view content_type);

// Adds `Content-Disposition: attachment` to a detokenize answer unless its type is inline-safe.
void AddPayloadDisposition(Response& res, std::string_view content_type);

// Why a cookie-authenticated request must be refused as cross-site, or nullopt when it may go on.
// `public_url` is the configured public_url (scheme://host[:port], may be empty). Only
// state-changing methods are checked. The reason is safe to log and to show.
std::optional<std::string> CrossSiteRefusal(const Request& req, std::string_view public_url);

}  // namespace otd::api
