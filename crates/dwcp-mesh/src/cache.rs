//! A node's HTTP response cache, shared by all the users of the apps the
//! node serves.
//!
//! Why: many users ask an edge node for the same pages; answering a GET
//! from memory spares the app an instance's time and the user a trip to
//! it. Because one stored response may be given to other users, this is a
//! *shared* cache in RFC 9111's sense and follows the stricter rules that
//! come with it: responses marked `private` or `no-store`, and responses
//! to requests carrying `Authorization` unless the app allowed it
//! (`public`, `s-maxage`), are not stored, and `s-maxage` wins over
//! `max-age`. The RFC decisions themselves (storable? fresh? which
//! validators to send? does this 304 refresh what is held?) are made by
//! the `http-cache-semantics` crate; this module adds the platform's rules
//! and the bounds.
//!
//! What is stored: under each [`CacheKey`] (tenant, app, GET or HEAD, path
//! and query), one entry per variant of the request headers the
//! response's `Vary` names. An entry keeps the status, the end-to-end
//! response headers and the body; of the request it keeps only `Host` and
//! the headers `Vary` names, so no user's credentials or cookies stay in
//! the cache.
//!
//! Platform rules ([`StorePolicy`]): an app's `default_ttl` gives
//! freshness to responses that state none; a stateful app's responses are
//! cached only when they ask for it. Heuristic freshness (from
//! `Last-Modified`) is off: nothing is served without asking the app
//! unless the app or its operator said it may be.
//!
//! Bounds: the entries' sizes (body, kept headers, key) add up to at most
//! `max_bytes`, the least recently used going first; one entry may take at
//! most a quarter of that, so that one large response cannot empty the
//! cache.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use http_cache_semantics::{
    AfterResponse, BeforeRequest, CacheOptions, CachePolicy, RequestLike, ResponseLike,
};

/// What a response is stored under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The tenant owning the app.
    pub tenant: String,
    /// The app that answered.
    pub app: String,
    /// The request's method; only GET and HEAD are cached.
    pub method: Method,
    /// The request's path and query (`/a/b?c=d`).
    pub uri: String,
}

impl CacheKey {
    /// The key of `req` for `tenant`'s `app`: its method, path and query.
    pub fn for_request(tenant: &str, app: &str, req: &http::request::Parts) -> Self {
        let uri = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        Self {
            tenant: tenant.to_owned(),
            app: app.to_owned(),
            method: req.method.clone(),
            uri: uri.to_owned(),
        }
    }

    /// Whether a purge of `tenant`, `app` and `path_prefix` covers this key.
    fn purged_by(&self, tenant: &str, app: Option<&str>, path_prefix: Option<&str>) -> bool {
        self.tenant == tenant
            && app.is_none_or(|app| self.app == app)
            && path_prefix.is_none_or(|prefix| self.uri.starts_with(prefix))
    }
}

/// The platform's rules for storing one app's responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StorePolicy {
    /// Freshness, in whole seconds, for storable responses that state none
    /// (no `max-age`, `s-maxage` or `Expires`, no `no-cache`); `None`: such
    /// responses are only ever revalidated.
    pub default_ttl: Option<Duration>,
    /// The app keeps state between requests: its responses are stored only
    /// when they ask for it (`public`, `max-age` or `s-maxage`), and
    /// `default_ttl` does not apply.
    pub stateful: bool,
}

/// A stored response as given back to a client.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedResponse {
    /// The stored status.
    pub status: StatusCode,
    /// The stored end-to-end headers, with `Age` set to the time in cache.
    pub headers: HeaderMap,
    /// The stored body.
    pub body: Bytes,
}

impl CachedResponse {
    /// The response to send.
    pub fn into_response(self) -> http::Response<Bytes> {
        let mut response = http::Response::new(self.body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

/// Which stored entry a revalidation is for; given by [`EdgeCache::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevalidationToken {
    /// The entry's id (ids are never reused, so a purged entry stays gone).
    entry: u64,
}

/// What the cache can do for a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// A fresh stored response: send it, the app is not asked.
    Fresh(CachedResponse),
    /// A stored response that must be checked with the app first: add
    /// `headers` to the request sent upstream, then give the answer to
    /// [`EdgeCache::revalidated`].
    Revalidate {
        /// `If-None-Match` and/or `If-Modified-Since` for the upstream request.
        headers: HeaderMap,
        /// Names the stored entry for [`EdgeCache::revalidated`].
        token: RevalidationToken,
    },
    /// Nothing usable is stored: ask the app, then offer the answer to
    /// [`EdgeCache::store`].
    Miss,
}

/// Counters kept by the cache, and its current size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct CacheStats {
    /// Lookups answered [`Lookup::Fresh`].
    pub hits: u64,
    /// Lookups answered [`Lookup::Miss`].
    pub misses: u64,
    /// Lookups answered [`Lookup::Revalidate`].
    pub revalidations: u64,
    /// Revalidations the app answered 304, refreshing the entry.
    pub refreshes: u64,
    /// Responses stored.
    pub stores: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Entries removed by purges.
    pub purged: u64,
    /// Entries held now.
    pub entries: usize,
    /// Bytes held now (bodies, kept headers, keys).
    pub bytes: usize,
}

/// A per-node HTTP response cache: shared-cache semantics, bounded in
/// bytes, least recently used entries evicted first.
#[derive(Debug)]
pub struct EdgeCache {
    /// The bound on `bytes`.
    max_bytes: usize,
    /// The sum of the entries' sizes.
    bytes: usize,
    /// The entries, by id.
    entries: HashMap<u64, Entry>,
    /// The ids of each key's variants, oldest stored first.
    variants: HashMap<CacheKey, Vec<u64>>,
    /// Entry ids by their last use, least recent first: the eviction order.
    recency: BTreeMap<u64, u64>,
    /// The next entry id.
    next_id: u64,
    /// The next use tick.
    next_tick: u64,
    /// The counters (`entries` and `bytes` are filled in by `stats`).
    stats: CacheStats,
}

/// One stored response.
#[derive(Debug)]
struct Entry {
    key: CacheKey,
    status: StatusCode,
    /// End-to-end response headers, as they will be served.
    headers: HeaderMap,
    body: Bytes,
    /// The app's own headers: variant matching, validators, 304 merging.
    policy: CachePolicy,
    /// The same with the operator's `default_ttl` applied, when it applies:
    /// freshness only (kept apart so that the added `s-maxage` is never
    /// served nor merged into a refresh).
    with_default_ttl: Option<CachePolicy>,
    /// The rules it was stored under, to apply again after a 304.
    rules: StorePolicy,
    size: usize,
    /// Its tick in `recency`.
    last_used: u64,
}

impl Entry {
    /// The policy that says whether the entry is fresh.
    fn freshness(&self) -> &CachePolicy {
        self.with_default_ttl.as_ref().unwrap_or(&self.policy)
    }

    /// The stored response, `Age` set to its time in cache at `now`.
    fn serve(&self, now: SystemTime) -> CachedResponse {
        let mut headers = self.headers.clone();
        set_age(&mut headers, self.policy.age(now).as_secs());
        CachedResponse {
            status: self.status,
            headers,
            body: self.body.clone(),
        }
    }

    /// Whether a conditional request can validate it.
    fn has_validator(&self) -> bool {
        self.headers.contains_key(header::ETAG) || self.headers.contains_key(header::LAST_MODIFIED)
    }
}

impl EdgeCache {
    /// An empty cache holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            bytes: 0,
            entries: HashMap::new(),
            variants: HashMap::new(),
            recency: BTreeMap::new(),
            next_id: 0,
            next_tick: 0,
            stats: CacheStats::default(),
        }
    }

    /// What the cache can do for request `req` under `key` at `now`.
    pub fn lookup(
        &mut self,
        key: &CacheKey,
        req: &http::request::Parts,
        now: SystemTime,
    ) -> Lookup {
        let answer = self.find(key, req, now);
        match answer {
            Lookup::Fresh(_) => self.stats.hits += 1,
            Lookup::Revalidate { .. } => self.stats.revalidations += 1,
            Lookup::Miss => self.stats.misses += 1,
        }
        answer
    }

    /// Offers the app's response to `req` for storing; true if stored.
    pub fn store(
        &mut self,
        key: CacheKey,
        req: &http::request::Parts,
        resp: &http::response::Parts,
        body: Bytes,
        policy: &StorePolicy,
        now: SystemTime,
    ) -> bool {
        let response = CachedResponse {
            status: resp.status,
            headers: end_to_end(&resp.headers),
            body,
        };
        let stored = self.insert(key, &req.headers, response, policy, now);
        if stored {
            self.stats.stores += 1;
        }
        stored
    }

    /// Takes the app's answer to a revalidation: a 304 matching the stored
    /// entry refreshes it and gives it back; any other answer drops the
    /// entry (the caller offers that answer to [`EdgeCache::store`]) and
    /// gives `None`, as does an entry gone meanwhile.
    pub fn revalidated(
        &mut self,
        token: RevalidationToken,
        req: &http::request::Parts,
        resp: &http::response::Parts,
        now: SystemTime,
    ) -> Option<CachedResponse> {
        // Taken out: put back refreshed, or dropped as outdated.
        let entry = self.remove(token.entry)?;
        let request = KeyedRequest::new(&entry.key, &req.headers)?;
        // The crate decides whether the answer is a 304 about what is
        // stored (same validators); the stored body is outdated otherwise.
        let answer = entry.policy.after_response(&request, resp, now);
        if !matches!(answer, AfterResponse::NotModified(..)) {
            return None;
        }
        self.stats.refreshes += 1;
        Some(self.refresh(entry, &req.headers, &resp.headers, now))
    }

    /// Removes the entries of `tenant` (only `app`'s, only under
    /// `path_prefix`, when given); gives how many.
    pub fn purge(&mut self, tenant: &str, app: Option<&str>, path_prefix: Option<&str>) -> usize {
        let doomed: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.key.purged_by(tenant, app, path_prefix))
            .map(|(&id, _)| id)
            .collect();
        for &id in &doomed {
            self.remove(id);
        }
        self.stats.purged += doomed.len() as u64;
        doomed.len()
    }

    /// The counters and the current size.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.entries.len(),
            bytes: self.bytes,
            ..self.stats
        }
    }

    /// Stores `entry` again with the headers of the 304 that validated it,
    /// if they still allow storing; gives the response to send either way.
    fn refresh(
        &mut self,
        entry: Entry,
        req_headers: &HeaderMap,
        not_modified: &HeaderMap,
        now: SystemTime,
    ) -> CachedResponse {
        let mut response = CachedResponse {
            status: entry.status,
            headers: merge_not_modified(&entry.headers, not_modified),
            body: entry.body,
        };
        if self.insert(
            entry.key.clone(),
            req_headers,
            response.clone(),
            &entry.rules,
            now,
        ) {
            let id = *self.variants[&entry.key].last().expect("just stored");
            return self.entries[&id].serve(now);
        }
        // Not storable any more (say the 304 said `no-store`), but this
        // once the app has vouched for the body.
        set_age(&mut response.headers, age_of(not_modified));
        response
    }

    /// The lookup itself, uncounted.
    fn find(&mut self, key: &CacheKey, req: &http::request::Parts, now: SystemTime) -> Lookup {
        let Some(request) = KeyedRequest::new(key, &req.headers) else {
            return Lookup::Miss;
        };
        // A request that must not be stored must not be answered from the
        // store either: it goes to the app untouched.
        if has_directive(&req.headers, "no-store") {
            return Lookup::Miss;
        }
        let Some((id, verdict)) = self.matching_variant(key, &request, now) else {
            return Lookup::Miss;
        };
        match verdict {
            BeforeRequest::Fresh(_) => {
                self.touch(id);
                Lookup::Fresh(self.entries[&id].serve(now))
            }
            // Without a validator the app cannot answer 304: a plain fetch
            // (whose answer replaces this entry) is all there is to do.
            BeforeRequest::Stale { .. } if !self.entries[&id].has_validator() => Lookup::Miss,
            BeforeRequest::Stale { request, .. } => {
                self.touch(id);
                Lookup::Revalidate {
                    headers: validators(&request.headers),
                    token: RevalidationToken { entry: id },
                }
            }
        }
    }

    /// The newest variant of `key` matching `request`, with the crate's
    /// verdict on it (RFC 9111 §4.1: the most recent matching response is
    /// the one to use).
    fn matching_variant(
        &self,
        key: &CacheKey,
        request: &KeyedRequest,
        now: SystemTime,
    ) -> Option<(u64, BeforeRequest)> {
        self.variants.get(key)?.iter().rev().find_map(|&id| {
            let verdict = self.entries[&id].freshness().before_request(request, now);
            let matches = matches!(
                verdict,
                BeforeRequest::Fresh(_) | BeforeRequest::Stale { matches: true, .. }
            );
            matches.then_some((id, verdict))
        })
    }

    /// Stores a response if the rules and the bounds allow; true if stored.
    fn insert(
        &mut self,
        key: CacheKey,
        req_headers: &HeaderMap,
        response: CachedResponse,
        rules: &StorePolicy,
        now: SystemTime,
    ) -> bool {
        let CachedResponse {
            status,
            headers,
            body,
        } = response;
        let Some(request) = KeyedRequest::new(&key, req_headers) else {
            return false;
        };
        let Some(admitted) = admit(&request, status, &headers, rules, now) else {
            return false;
        };
        let size = key.tenant.len()
            + key.app.len()
            + key.uri.len()
            + header_bytes(&headers)
            + admitted.request_bytes
            + body.len();
        if size > self.max_bytes / 4 {
            return false;
        }
        self.remove_same_variant(&key, &request, now);
        self.make_room(size);
        let id = self.next_id;
        self.next_id += 1;
        let tick = self.tick();
        self.variants.entry(key.clone()).or_default().push(id);
        self.recency.insert(tick, id);
        self.bytes += size;
        self.entries.insert(
            id,
            Entry {
                key,
                status,
                headers,
                body,
                policy: admitted.policy,
                with_default_ttl: admitted.with_default_ttl,
                rules: *rules,
                size,
                last_used: tick,
            },
        );
        true
    }

    /// Drops the variants of `key` that a new response to `request`
    /// replaces (those `request` would have been answered from).
    fn remove_same_variant(&mut self, key: &CacheKey, request: &KeyedRequest, now: SystemTime) {
        let Some(ids) = self.variants.get(key) else {
            return;
        };
        let replaced: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| {
                let verdict = self.entries[id].policy.before_request(request, now);
                matches!(
                    verdict,
                    BeforeRequest::Fresh(_) | BeforeRequest::Stale { matches: true, .. }
                )
            })
            .collect();
        for id in replaced {
            self.remove(id);
        }
    }

    /// Evicts least recently used entries until `size` more bytes fit.
    fn make_room(&mut self, size: usize) {
        while self.bytes + size > self.max_bytes {
            let Some((_, id)) = self.recency.pop_first() else {
                return;
            };
            self.remove(id);
            self.stats.evictions += 1;
        }
    }

    /// Marks an entry as just used.
    fn touch(&mut self, id: u64) {
        let tick = self.tick();
        if let Some(entry) = self.entries.get_mut(&id) {
            self.recency.remove(&entry.last_used);
            self.recency.insert(tick, id);
            entry.last_used = tick;
        }
    }

    /// The next use tick.
    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// Removes an entry from every index.
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        self.recency.remove(&entry.last_used);
        if let Some(ids) = self.variants.get_mut(&entry.key) {
            ids.retain(|&other| other != id);
            if ids.is_empty() {
                self.variants.remove(&entry.key);
            }
        }
        self.bytes -= entry.size;
        Some(entry)
    }
}

/// The policies of a response the rules allow storing.
struct Admitted {
    policy: CachePolicy,
    with_default_ttl: Option<CachePolicy>,
    /// The size of the request headers the policies keep.
    request_bytes: usize,
}

/// Whether the response to `request` may be stored, and how fresh it is.
fn admit(
    request: &KeyedRequest,
    status: StatusCode,
    headers: &HeaderMap,
    rules: &StorePolicy,
    now: SystemTime,
) -> Option<Admitted> {
    let response = ResponseHead { status, headers };
    // Judged on the whole request: `Authorization` and `no-store` count.
    if !CachePolicy::new_options(request, &response, now, options()).is_storable() {
        return None;
    }
    // `Vary: *` matches no later request: storing it would only take room.
    if header_tokens(headers, &header::VARY).any(|name| name == "*") {
        return None;
    }
    if rules.stateful && !asks_for_caching(headers) {
        return None;
    }
    // Decided on the whole request too: not for `Authorization` requests.
    let default_ttl = default_ttl(request.headers, headers, rules);
    // Kept: only what variant matching needs, no credentials or cookies.
    let kept = selecting_headers(request.headers, headers);
    let request = KeyedRequest {
        method: request.method,
        uri: request.uri.clone(),
        headers: &kept,
    };
    let policy = CachePolicy::new_options(&request, &response, now, options());
    let with_default_ttl = default_ttl.map(|ttl| {
        let headers = with_s_maxage(headers, ttl);
        let response = ResponseHead {
            status,
            headers: &headers,
        };
        CachePolicy::new_options(&request, &response, now, options())
    });
    let freshness = with_default_ttl.as_ref().unwrap_or(&policy);
    // Never fresh and nothing to revalidate with: it could never be used.
    let usable = !freshness.time_to_live(now).is_zero()
        || headers.contains_key(header::ETAG)
        || headers.contains_key(header::LAST_MODIFIED);
    usable.then(|| Admitted {
        policy,
        with_default_ttl,
        request_bytes: header_bytes(&kept),
    })
}

/// The crate's options: a shared cache, and no freshness the app did not
/// state (no heuristic from `Last-Modified`, none for bare `immutable`).
fn options() -> CacheOptions {
    CacheOptions {
        shared: true,
        cache_heuristic: 0.0,
        immutable_min_time_to_live: Duration::ZERO,
        ignore_cargo_cult: false,
    }
}

/// The operator's default freshness, if it applies to this response: not
/// for stateful apps, not when the app stated a freshness or asked for
/// revalidation, not for responses setting cookies or answering
/// `Authorization` (a default must not share one user's answer).
fn default_ttl(
    req_headers: &HeaderMap,
    headers: &HeaderMap,
    rules: &StorePolicy,
) -> Option<Duration> {
    let ttl = rules
        .default_ttl
        .filter(|ttl| !rules.stateful && ttl.as_secs() > 0)?;
    let explicit = has_directive(headers, "max-age")
        || has_directive(headers, "s-maxage")
        || headers.contains_key(header::EXPIRES);
    let no_cache = has_directive(headers, "no-cache")
        || (!headers.contains_key(header::CACHE_CONTROL)
            && header_tokens(headers, &header::PRAGMA).any(|token| token == "no-cache"));
    let personal =
        headers.contains_key(header::SET_COOKIE) || req_headers.contains_key(header::AUTHORIZATION);
    (!explicit && !no_cache && !personal).then_some(ttl)
}

/// `headers` with `s-maxage` set to `ttl`, for the crate to judge freshness.
fn with_s_maxage(headers: &HeaderMap, ttl: Duration) -> HeaderMap {
    let mut headers = headers.clone();
    let s_maxage = HeaderValue::from(ttl.as_secs());
    let mut value = b"s-maxage=".to_vec();
    value.extend_from_slice(s_maxage.as_bytes());
    headers.append(
        header::CACHE_CONTROL,
        HeaderValue::from_bytes(&value).expect("digits are a valid header value"),
    );
    headers
}

/// Whether a stateful app's response asks to be cached.
fn asks_for_caching(headers: &HeaderMap) -> bool {
    ["public", "max-age", "s-maxage"]
        .iter()
        .any(|directive| has_directive(headers, directive))
}

/// Whether `Cache-Control` carries `directive` (any value).
fn has_directive(headers: &HeaderMap, directive: &str) -> bool {
    header_tokens(headers, &header::CACHE_CONTROL).any(|token| {
        let name = token.split('=').next().unwrap_or_default().trim();
        name.eq_ignore_ascii_case(directive)
    })
}

/// The comma-separated items of every `name` header, trimmed.
fn header_tokens<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// Of the request's headers, those a stored response is matched on:
/// `Host` and the ones its `Vary` names.
fn selecting_headers(req_headers: &HeaderMap, headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    let varied = header_tokens(headers, &header::VARY)
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok());
    for name in std::iter::once(header::HOST).chain(varied) {
        for value in req_headers.get_all(&name) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// Headers about the connection, not the response: never stored (RFC 9111 §3.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// `headers` without the hop-by-hop ones (and those `Connection` names).
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut kept = headers.clone();
    for name in header_tokens(headers, &header::CONNECTION) {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            kept.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        kept.remove(name);
    }
    kept.remove("keep-alive");
    kept
}

/// The stored headers updated by a 304's (RFC 9111 §3.2): each header the
/// 304 carries replaces all of the stored ones of that name, except those
/// describing the body, which the 304 does not carry. (Done here because
/// the crate's merge keeps one value per name and adds no new names.)
fn merge_not_modified(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    const ABOUT_THE_BODY: [HeaderName; 3] = [
        header::CONTENT_LENGTH,
        header::CONTENT_ENCODING,
        header::CONTENT_RANGE,
    ];
    let update = end_to_end(not_modified);
    let mut merged = stored.clone();
    for name in update.keys().filter(|name| !ABOUT_THE_BODY.contains(name)) {
        merged.remove(name);
        for value in update.get_all(name) {
            merged.append(name.clone(), value.clone());
        }
    }
    merged
}

/// The validators in the crate's revalidation request.
fn validators(revalidation: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE] {
        for value in revalidation.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
}

/// Sets `Age` to `seconds`.
fn set_age(headers: &mut HeaderMap, seconds: u64) {
    headers.insert(header::AGE, HeaderValue::from(seconds));
}

/// The `Age` a response came with (0 when none or unreadable).
fn age_of(headers: &HeaderMap) -> u64 {
    headers
        .get(header::AGE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// The bytes `headers` take: names and values.
fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum()
}

/// A request as the crate sees it: the key's method and path (so that the
/// key, not how the client spelled its URI, names the resource) with the
/// request's headers.
struct KeyedRequest<'a> {
    method: &'a Method,
    uri: Uri,
    headers: &'a HeaderMap,
}

impl<'a> KeyedRequest<'a> {
    /// `None` when the key is not cacheable: not GET or HEAD, or not a
    /// path and query.
    fn new(key: &'a CacheKey, headers: &'a HeaderMap) -> Option<Self> {
        if key.method != Method::GET && key.method != Method::HEAD {
            return None;
        }
        let uri = key.uri.parse().ok()?;
        Some(Self {
            method: &key.method,
            uri,
            headers,
        })
    }
}

impl RequestLike for KeyedRequest<'_> {
    fn uri(&self) -> Uri {
        self.uri.clone()
    }

    fn is_same_uri(&self, other: &Uri) -> bool {
        &self.uri == other
    }

    fn method(&self) -> &Method {
        self.method
    }

    fn headers(&self) -> &HeaderMap {
        self.headers
    }
}

/// A response's status and headers as the crate sees them.
struct ResponseHead<'a> {
    status: StatusCode,
    headers: &'a HeaderMap,
}

impl ResponseLike for ResponseHead<'_> {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn headers(&self) -> &HeaderMap {
        self.headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed start, so that dates in headers mean the same every run.
    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    fn request(method: Method, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn get(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        request(Method::GET, uri, headers)
    }

    fn response(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
        let mut builder = http::Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn key_for(req: &http::request::Parts) -> CacheKey {
        CacheKey::for_request("acme", "shop", req)
    }

    const NO_DEFAULT: StorePolicy = StorePolicy {
        default_ttl: None,
        stateful: false,
    };

    /// Stores a 200 with `headers` and `body` for `req` at `at(0)`.
    fn put(
        cache: &mut EdgeCache,
        req: &http::request::Parts,
        headers: &[(&str, &str)],
        body: &str,
        rules: &StorePolicy,
    ) -> bool {
        let resp = response(200, headers);
        cache.store(
            key_for(req),
            req,
            &resp,
            Bytes::from(body.to_owned()),
            rules,
            at(0),
        )
    }

    fn body_of(lookup: Lookup) -> Bytes {
        match lookup {
            Lookup::Fresh(cached) => cached.body,
            other => panic!("expected a fresh hit, got {other:?}"),
        }
    }

    fn revalidation_headers(lookup: Lookup) -> (HeaderMap, RevalidationToken) {
        match lookup {
            Lookup::Revalidate { headers, token } => (headers, token),
            other => panic!("expected a revalidation, got {other:?}"),
        }
    }

    #[test]
    fn only_get_and_head_are_cached() {
        let mut cache = EdgeCache::new(1 << 20);
        let headers = [("cache-control", "max-age=60")];
        let post = request(Method::POST, "/form", &[]);
        assert!(!put(&mut cache, &post, &headers, "posted", &NO_DEFAULT));
        assert_eq!(cache.lookup(&key_for(&post), &post, at(1)), Lookup::Miss);

        let head = request(Method::HEAD, "/page", &[]);
        assert!(put(&mut cache, &head, &headers, "", &NO_DEFAULT));
        assert!(matches!(
            cache.lookup(&key_for(&head), &head, at(1)),
            Lookup::Fresh(_)
        ));
        // A HEAD entry does not answer a GET: the key has the method.
        let get = get("/page", &[]);
        assert_eq!(cache.lookup(&key_for(&get), &get, at(1)), Lookup::Miss);
    }

    #[test]
    fn private_responses_are_not_stored() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/me", &[]);
        let headers = [("cache-control", "private, max-age=60")];
        assert!(!put(&mut cache, &req, &headers, "mine", &NO_DEFAULT));
        assert_eq!(cache.lookup(&key_for(&req), &req, at(1)), Lookup::Miss);
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn no_store_responses_are_not_stored() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/secret", &[]);
        let headers = [("cache-control", "no-store, max-age=60")];
        assert!(!put(&mut cache, &req, &headers, "s", &NO_DEFAULT));
        assert_eq!(cache.lookup(&key_for(&req), &req, at(1)), Lookup::Miss);
    }

    #[test]
    fn authorized_requests_are_stored_only_when_the_app_allows() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/report", &[("authorization", "Bearer alice")]);
        let plain = [("cache-control", "max-age=60")];
        assert!(!put(&mut cache, &req, &plain, "alice's", &NO_DEFAULT));
        let shared = [("cache-control", "s-maxage=60")];
        assert!(put(&mut cache, &req, &shared, "everyone's", &NO_DEFAULT));
        // The credentials are not kept with the entry.
        let entry = cache.entries.values().next().unwrap();
        assert!(!format!("{:?}", entry.policy).contains("alice"));
    }

    #[test]
    fn max_age_gives_freshness_then_revalidation_by_etag() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/a", &[]);
        let headers = [("cache-control", "max-age=60"), ("etag", "\"v1\"")];
        assert!(put(&mut cache, &req, &headers, "one", &NO_DEFAULT));
        assert_eq!(body_of(cache.lookup(&key_for(&req), &req, at(59))), "one");
        let (validators, _) = revalidation_headers(cache.lookup(&key_for(&req), &req, at(61)));
        assert_eq!(validators.get(header::IF_NONE_MATCH).unwrap(), "\"v1\"");
        assert!(!validators.contains_key(header::IF_MODIFIED_SINCE));
    }

    #[test]
    fn s_maxage_wins_over_max_age() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/b", &[]);
        let headers = [
            ("cache-control", "max-age=10, s-maxage=100"),
            ("etag", "\"b\""),
        ];
        assert!(put(&mut cache, &req, &headers, "b", &NO_DEFAULT));
        assert_eq!(body_of(cache.lookup(&key_for(&req), &req, at(50))), "b");
        revalidation_headers(cache.lookup(&key_for(&req), &req, at(101)));
    }

    #[test]
    fn revalidation_sends_if_modified_since_for_last_modified() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/c", &[]);
        let modified = "Sun, 01 Jan 2023 00:00:00 GMT";
        let headers = [
            ("cache-control", "max-age=5"),
            ("etag", "\"c\""),
            ("last-modified", modified),
        ];
        assert!(put(&mut cache, &req, &headers, "c", &NO_DEFAULT));
        let (validators, _) = revalidation_headers(cache.lookup(&key_for(&req), &req, at(6)));
        assert_eq!(validators.get(header::IF_NONE_MATCH).unwrap(), "\"c\"");
        assert_eq!(validators.get(header::IF_MODIFIED_SINCE).unwrap(), modified);
    }

    #[test]
    fn a_304_refreshes_the_stored_entry() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/d", &[]);
        let headers = [
            ("cache-control", "max-age=10"),
            ("etag", "\"d\""),
            ("x-build", "1"),
        ];
        assert!(put(&mut cache, &req, &headers, "dee", &NO_DEFAULT));
        let (_, token) = revalidation_headers(cache.lookup(&key_for(&req), &req, at(20)));
        let not_modified = response(
            304,
            &[
                ("etag", "\"d\""),
                ("cache-control", "max-age=30"),
                ("x-build", "2"),
            ],
        );
        let refreshed = cache
            .revalidated(token, &req, &not_modified, at(20))
            .unwrap();
        assert_eq!(refreshed.status, StatusCode::OK);
        assert_eq!(refreshed.body, "dee");
        assert_eq!(refreshed.headers.get("x-build").unwrap(), "2");
        assert_eq!(refreshed.headers.get(header::AGE).unwrap(), "0");
        // Fresh again for the 304's 30 s, counted from the refresh.
        let hit = cache.lookup(&key_for(&req), &req, at(45));
        assert_eq!(body_of(hit.clone()), "dee");
        assert_eq!(cache.stats().refreshes, 1);
        assert_eq!(cache.stats().entries, 1);
        revalidation_headers(cache.lookup(&key_for(&req), &req, at(51)));
    }

    #[test]
    fn a_304_saying_no_store_answers_once_and_drops_the_entry() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/d2", &[]);
        let headers = [("cache-control", "max-age=10"), ("etag", "\"d2\"")];
        assert!(put(&mut cache, &req, &headers, "d2", &NO_DEFAULT));
        let (_, token) = revalidation_headers(cache.lookup(&key_for(&req), &req, at(20)));
        let not_modified = response(304, &[("etag", "\"d2\""), ("cache-control", "no-store")]);
        let answer = cache
            .revalidated(token, &req, &not_modified, at(20))
            .unwrap();
        assert_eq!(answer.body, "d2");
        assert_eq!(cache.stats().entries, 0);
        assert_eq!(cache.lookup(&key_for(&req), &req, at(21)), Lookup::Miss);
    }

    #[test]
    fn a_304_for_another_etag_refreshes_nothing() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/e", &[]);
        let headers = [("cache-control", "max-age=10"), ("etag", "\"e1\"")];
        assert!(put(&mut cache, &req, &headers, "e", &NO_DEFAULT));
        let (_, token) = revalidation_headers(cache.lookup(&key_for(&req), &req, at(20)));
        let other = response(304, &[("etag", "\"e2\"")]);
        assert_eq!(cache.revalidated(token, &req, &other, at(20)), None);
        assert_eq!(cache.lookup(&key_for(&req), &req, at(21)), Lookup::Miss);
    }

    #[test]
    fn a_200_on_revalidation_means_the_caller_stores_it() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/f", &[]);
        let old = [("cache-control", "max-age=10"), ("etag", "\"f1\"")];
        assert!(put(&mut cache, &req, &old, "old", &NO_DEFAULT));
        let (_, token) = revalidation_headers(cache.lookup(&key_for(&req), &req, at(20)));
        let new = response(200, &[("cache-control", "max-age=10"), ("etag", "\"f2\"")]);
        assert_eq!(cache.revalidated(token, &req, &new, at(20)), None);
        assert_eq!(cache.lookup(&key_for(&req), &req, at(20)), Lookup::Miss);
        assert!(cache.store(
            key_for(&req),
            &req,
            &new,
            Bytes::from_static(b"new"),
            &NO_DEFAULT,
            at(20)
        ));
        assert_eq!(body_of(cache.lookup(&key_for(&req), &req, at(25))), "new");
        assert_eq!(cache.stats().entries, 1);
    }

    #[test]
    fn vary_keeps_one_entry_per_variant() {
        let mut cache = EdgeCache::new(1 << 20);
        let headers = [("cache-control", "max-age=60"), ("vary", "Accept-Language")];
        let en = get("/home", &[("accept-language", "en")]);
        let fr = get("/home", &[("accept-language", "fr")]);
        assert!(put(&mut cache, &en, &headers, "hello", &NO_DEFAULT));
        assert!(put(&mut cache, &fr, &headers, "bonjour", &NO_DEFAULT));
        assert_eq!(cache.stats().entries, 2);
        assert_eq!(body_of(cache.lookup(&key_for(&en), &en, at(1))), "hello");
        assert_eq!(body_of(cache.lookup(&key_for(&fr), &fr, at(1))), "bonjour");
        let de = get("/home", &[("accept-language", "de")]);
        assert_eq!(cache.lookup(&key_for(&de), &de, at(1)), Lookup::Miss);
    }

    #[test]
    fn storing_the_same_variant_again_replaces_it() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/g", &[]);
        let headers = [("cache-control", "max-age=60")];
        assert!(put(&mut cache, &req, &headers, "first", &NO_DEFAULT));
        let bytes = cache.stats().bytes;
        assert!(put(&mut cache, &req, &headers, "again", &NO_DEFAULT));
        assert_eq!(cache.stats().entries, 1);
        assert_eq!(cache.stats().bytes, bytes);
        assert_eq!(body_of(cache.lookup(&key_for(&req), &req, at(1))), "again");
    }

    #[test]
    fn vary_star_never_matches() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/h", &[]);
        let headers = [("cache-control", "max-age=60"), ("vary", "*")];
        assert!(!put(&mut cache, &req, &headers, "h", &NO_DEFAULT));
        assert_eq!(cache.lookup(&key_for(&req), &req, at(1)), Lookup::Miss);
    }

    #[test]
    fn default_ttl_gives_freshness_to_responses_stating_none() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/i", &[]);
        let rules = StorePolicy {
            default_ttl: Some(Duration::from_secs(30)),
            stateful: false,
        };
        assert!(put(&mut cache, &req, &[("etag", "\"i\"")], "i", &rules));
        let hit = cache.lookup(&key_for(&req), &req, at(29));
        let Lookup::Fresh(cached) = hit else {
            panic!("expected a fresh hit, got {hit:?}");
        };
        // The default is the node's, not the app's: not shown downstream.
        assert!(!cached.headers.contains_key(header::CACHE_CONTROL));
        revalidation_headers(cache.lookup(&key_for(&req), &req, at(31)));
    }

    #[test]
    fn without_default_ttl_nothing_is_heuristically_fresh() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/j", &[]);
        // Ten months unmodified: the crate's heuristic would give a month.
        let headers = [("last-modified", "Sun, 01 Jan 2023 00:00:00 GMT")];
        assert!(put(&mut cache, &req, &headers, "j", &NO_DEFAULT));
        revalidation_headers(cache.lookup(&key_for(&req), &req, at(1)));
        // Neither fresh nor revalidatable: not worth storing.
        let bare = get("/j2", &[]);
        assert!(!put(&mut cache, &bare, &[], "j2", &NO_DEFAULT));
    }

    #[test]
    fn default_ttl_does_not_override_explicit_freshness() {
        let mut cache = EdgeCache::new(1 << 20);
        let rules = StorePolicy {
            default_ttl: Some(Duration::from_secs(30)),
            stateful: false,
        };
        let short = get("/k", &[]);
        assert!(put(
            &mut cache,
            &short,
            &[("cache-control", "max-age=5"), ("etag", "\"k\"")],
            "k",
            &rules
        ));
        revalidation_headers(cache.lookup(&key_for(&short), &short, at(10)));

        let no_cache = get("/k2", &[]);
        assert!(put(
            &mut cache,
            &no_cache,
            &[("cache-control", "no-cache"), ("etag", "\"k2\"")],
            "k2",
            &rules
        ));
        revalidation_headers(cache.lookup(&key_for(&no_cache), &no_cache, at(1)));
    }

    #[test]
    fn responses_setting_cookies_are_not_shared_fresh() {
        let mut cache = EdgeCache::new(1 << 20);
        let rules = StorePolicy {
            default_ttl: Some(Duration::from_secs(30)),
            stateful: false,
        };
        let req = get("/login", &[]);
        let headers = [
            ("cache-control", "max-age=60"),
            ("set-cookie", "session=alice"),
            ("etag", "\"l\""),
        ];
        assert!(put(&mut cache, &req, &headers, "l", &rules));
        revalidation_headers(cache.lookup(&key_for(&req), &req, at(1)));
    }

    #[test]
    fn stateful_apps_are_cached_only_when_the_response_asks() {
        let mut cache = EdgeCache::new(1 << 20);
        let rules = StorePolicy {
            default_ttl: Some(Duration::from_secs(30)),
            stateful: true,
        };
        let silent = get("/cart", &[]);
        assert!(!put(
            &mut cache,
            &silent,
            &[("etag", "\"c\"")],
            "cart",
            &rules
        ));
        assert_eq!(
            cache.lookup(&key_for(&silent), &silent, at(1)),
            Lookup::Miss
        );

        let asked = get("/catalog", &[]);
        assert!(put(
            &mut cache,
            &asked,
            &[("cache-control", "max-age=60")],
            "catalog",
            &rules
        ));
        assert_eq!(
            body_of(cache.lookup(&key_for(&asked), &asked, at(1))),
            "catalog"
        );

        // `public` alone lets it be stored, but the default TTL still does
        // not apply: it is revalidated every time.
        let public = get("/news", &[]);
        assert!(put(
            &mut cache,
            &public,
            &[("cache-control", "public"), ("etag", "\"n\"")],
            "news",
            &rules
        ));
        revalidation_headers(cache.lookup(&key_for(&public), &public, at(1)));
    }

    #[test]
    fn request_no_cache_forces_revalidation() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/m", &[]);
        assert!(put(
            &mut cache,
            &req,
            &[("cache-control", "max-age=60"), ("etag", "\"m\"")],
            "m",
            &NO_DEFAULT
        ));
        let insistent = get("/m", &[("cache-control", "no-cache")]);
        let (validators, _) =
            revalidation_headers(cache.lookup(&key_for(&insistent), &insistent, at(1)));
        assert_eq!(validators.get(header::IF_NONE_MATCH).unwrap(), "\"m\"");
    }

    #[test]
    fn request_no_store_bypasses_the_cache() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/n", &[]);
        let headers = [("cache-control", "max-age=60")];
        assert!(put(&mut cache, &req, &headers, "n", &NO_DEFAULT));
        let bypass = get("/n", &[("cache-control", "no-store")]);
        assert_eq!(
            cache.lookup(&key_for(&bypass), &bypass, at(1)),
            Lookup::Miss
        );
        let other = get("/n2", &[("cache-control", "no-store")]);
        assert!(!put(&mut cache, &other, &headers, "n2", &NO_DEFAULT));
    }

    #[test]
    fn least_recently_used_entries_are_evicted_first() {
        let body = "x".repeat(900);
        let mut cache = EdgeCache::new(4000);
        let headers = [("cache-control", "max-age=60")];
        let reqs: Vec<_> = ["/1", "/2", "/3", "/4", "/5"]
            .iter()
            .map(|uri| get(uri, &[]))
            .collect();
        for req in &reqs[..4] {
            assert!(put(&mut cache, req, &headers, &body, &NO_DEFAULT));
        }
        assert_eq!(cache.stats().evictions, 0);
        // Using /1 makes /2 the least recently used.
        body_of(cache.lookup(&key_for(&reqs[0]), &reqs[0], at(1)));
        assert!(put(&mut cache, &reqs[4], &headers, &body, &NO_DEFAULT));
        assert_eq!(cache.stats().evictions, 1);
        assert_eq!(
            cache.lookup(&key_for(&reqs[1]), &reqs[1], at(2)),
            Lookup::Miss
        );
        for req in [&reqs[0], &reqs[2], &reqs[3], &reqs[4]] {
            body_of(cache.lookup(&key_for(req), req, at(2)));
        }
        assert!(cache.stats().bytes <= 4000);
    }

    #[test]
    fn an_entry_over_a_quarter_of_the_bound_is_not_stored() {
        let body = "x".repeat(1001);
        let mut cache = EdgeCache::new(4000);
        let req = get("/big", &[]);
        assert!(!put(
            &mut cache,
            &req,
            &[("cache-control", "max-age=60")],
            &body,
            &NO_DEFAULT
        ));
        assert_eq!(cache.stats().bytes, 0);
    }

    /// A cache holding, fresh, acme/shop /a/1 and /b/1, acme/blog /a/1,
    /// and other/shop /a/1.
    fn populated() -> EdgeCache {
        let mut cache = EdgeCache::new(1 << 20);
        let resp = response(200, &[("cache-control", "max-age=60")]);
        for (tenant, app, uri) in [
            ("acme", "shop", "/a/1"),
            ("acme", "shop", "/b/1"),
            ("acme", "blog", "/a/1"),
            ("other", "shop", "/a/1"),
        ] {
            let req = get(uri, &[]);
            let key = CacheKey::for_request(tenant, app, &req);
            assert!(cache.store(
                key,
                &req,
                &resp,
                Bytes::from_static(b"x"),
                &NO_DEFAULT,
                at(0)
            ));
        }
        cache
    }

    fn cached(cache: &mut EdgeCache, tenant: &str, app: &str, uri: &str) -> bool {
        let req = get(uri, &[]);
        let key = CacheKey::for_request(tenant, app, &req);
        matches!(cache.lookup(&key, &req, at(1)), Lookup::Fresh(_))
    }

    #[test]
    fn purge_by_tenant() {
        let mut cache = populated();
        assert_eq!(cache.purge("acme", None, None), 3);
        assert!(!cached(&mut cache, "acme", "shop", "/a/1"));
        assert!(!cached(&mut cache, "acme", "blog", "/a/1"));
        assert!(cached(&mut cache, "other", "shop", "/a/1"));
        assert_eq!(cache.stats().purged, 3);
    }

    #[test]
    fn purge_by_app() {
        let mut cache = populated();
        assert_eq!(cache.purge("acme", Some("shop"), None), 2);
        assert!(!cached(&mut cache, "acme", "shop", "/b/1"));
        assert!(cached(&mut cache, "acme", "blog", "/a/1"));
        assert!(cached(&mut cache, "other", "shop", "/a/1"));
    }

    #[test]
    fn purge_by_path_prefix() {
        let mut cache = populated();
        assert_eq!(cache.purge("acme", Some("shop"), Some("/a/")), 1);
        assert!(!cached(&mut cache, "acme", "shop", "/a/1"));
        assert!(cached(&mut cache, "acme", "shop", "/b/1"));
        assert!(cached(&mut cache, "acme", "blog", "/a/1"));
        assert_eq!(cache.stats().entries, 3);
    }

    #[test]
    fn a_purged_entry_cannot_be_revalidated() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/o", &[]);
        assert!(put(
            &mut cache,
            &req,
            &[("cache-control", "max-age=1"), ("etag", "\"o\"")],
            "o",
            &NO_DEFAULT
        ));
        let (_, token) = revalidation_headers(cache.lookup(&key_for(&req), &req, at(5)));
        assert_eq!(cache.purge("acme", None, None), 1);
        let not_modified = response(304, &[("etag", "\"o\"")]);
        assert_eq!(cache.revalidated(token, &req, &not_modified, at(5)), None);
        assert_eq!(cache.stats().bytes, 0);
    }

    #[test]
    fn age_reflects_time_in_cache() {
        let mut cache = EdgeCache::new(1 << 20);
        let fresh = get("/p", &[]);
        assert!(put(
            &mut cache,
            &fresh,
            &[("cache-control", "max-age=60")],
            "p",
            &NO_DEFAULT
        ));
        let hit = cache.lookup(&key_for(&fresh), &fresh, at(7));
        let Lookup::Fresh(cached) = hit else {
            panic!("expected a fresh hit, got {hit:?}");
        };
        assert_eq!(cached.headers.get(header::AGE).unwrap(), "7");

        // Time spent in caches upstream counts too.
        let aged = get("/q", &[]);
        assert!(put(
            &mut cache,
            &aged,
            &[("cache-control", "max-age=60"), ("age", "3")],
            "q",
            &NO_DEFAULT
        ));
        let hit = cache.lookup(&key_for(&aged), &aged, at(7));
        let Lookup::Fresh(cached) = hit else {
            panic!("expected a fresh hit, got {hit:?}");
        };
        assert_eq!(cached.headers.get(header::AGE).unwrap(), "10");
    }

    #[test]
    fn hop_by_hop_headers_are_not_stored() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/r", &[]);
        let headers = [
            ("cache-control", "max-age=60"),
            ("connection", "x-trace"),
            ("x-trace", "1"),
            ("x-kept", "1"),
        ];
        assert!(put(&mut cache, &req, &headers, "r", &NO_DEFAULT));
        let hit = cache.lookup(&key_for(&req), &req, at(1));
        let Lookup::Fresh(cached) = hit else {
            panic!("expected a fresh hit, got {hit:?}");
        };
        assert!(!cached.headers.contains_key(header::CONNECTION));
        assert!(!cached.headers.contains_key("x-trace"));
        assert!(cached.headers.contains_key("x-kept"));
    }

    #[test]
    fn stats_count_lookups_and_stores() {
        let mut cache = EdgeCache::new(1 << 20);
        let req = get("/s", &[]);
        assert_eq!(cache.lookup(&key_for(&req), &req, at(0)), Lookup::Miss);
        assert!(put(
            &mut cache,
            &req,
            &[("cache-control", "max-age=10"), ("etag", "\"s\"")],
            "s",
            &NO_DEFAULT
        ));
        body_of(cache.lookup(&key_for(&req), &req, at(1)));
        revalidation_headers(cache.lookup(&key_for(&req), &req, at(11)));
        let stats = cache.stats();
        assert_eq!(
            (stats.hits, stats.misses, stats.revalidations, stats.stores),
            (1, 1, 1, 1)
        );
        assert_eq!(stats.entries, 1);
        assert!(stats.bytes > 1);
    }
}
