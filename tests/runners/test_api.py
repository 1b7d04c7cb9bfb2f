"""The HTTP API as its callers meet it: ``skyledger serve`` over a ledger of real ZTF
alerts, with two channels (A and B), grants as ledger events, personal access tokens
and OpenID Connect tokens from a real Dex. A caller of channel A finds nothing of
channel B on any route the API's own schema lists; bad credentials are refused on every
route; lists page, the change feed resumes, CSV and problem documents are served."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import tests.runners.pipeline_units  # noqa: F401  (registers the test units)
from skyledger.ledger import FilterDecided, Ledger, RunStarted
from skyledger.ledger.access import AccessGranted, ChannelPolicySet
from skyledger.projections.access import make_token
from skyledger.projections.limits import Limits
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner
from skyledger.runners.oidc_provider import EmbeddedDex
from skyledger.runners.replay import ReplayRunner
from skyledger.units.sources import FileSource
from tests.runners.api_kit import every_route_keeps, fill, issue_token

pytestmark = [pytest.mark.oidc, pytest.mark.slow]

DATA = Path(__file__).resolve().parents[1] / "data" / "ztf"
FILES = [DATA / "night" / "fink-client_sample_part-00001_n54.avro",
         *sorted((DATA / "ZTF21abiuvdk").glob("*.avro"))]  # fmt: skip
JOB = """
name: api
channels:
  - {name: A, filter: {unit: MinDetections, config: {n: 8}}, autocomplete: true}
  - {name: B, filter: {unit: MinDetections, config: {n: 1}}}
combiner: {unit: AllPoints}
t2: [{unit: CountPoints}, {unit: TotalFromCounts}]
t3: [{unit: CollectReactor, config: {path: OUT}, select: {channels: [B]}}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Served:
    """A running ``skyledger serve`` and what the tests know of its ledger."""

    def __init__(self, url: str, ledger: Ledger, tokens: dict[str, str], dex: EmbeddedDex):
        self.url, self.ledger, self.tokens, self.dex = url, ledger, tokens, dex

    def get(self, path: str, token: str | None = None, **params: Any) -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.get(self.url + path, headers=headers, params=params, timeout=60)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, dex: EmbeddedDex) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("api")
    url = f"sqlite:///{folder / 'ledger.sqlite'}"
    ledger = Ledger.open(url)
    text = JOB.replace("OUT", str(folder / "out.txt"))
    source = FileSource({"paths": [str(f) for f in FILES]})
    LocalRunner(parse_job(text), text, ledger, [source], read_model=False).run()
    replayed(ledger, text)
    ledger.append([
        AccessGranted(stream="access:A", channel="A", member="team:ampelproject/dev", by="t"),
        AccessGranted(stream="access:A", channel="A", member="user:carol", by="t"),
        AccessGranted(stream="access:B", channel="B", member="user:bob", by="t"),
        AccessGranted(stream="access:A", channel="A", member="user:dana", by="t"),
        AccessGranted(stream="access:B", channel="B", member="user:dana", by="t"),
        ChannelPolicySet(stream="access:A", channel="A", public=False, programids=(1,), by="t"),
    ])  # fmt: skip
    tokens = {
        "carol": issue_token(ledger, "user:carol"),
        "expired": issue_token(ledger, "user:carol", days=-1),
        "bob": issue_token(ledger, "user:bob"),
        "dana": issue_token(ledger, "user:dana"),  # both channels
    }
    port = free_port()
    command = [sys.executable, "-m", "skyledger.runners.cli", "serve", "--ledger", url, "--port",
               str(port), "--oidc-issuer", dex.issuer, "--oidc-audience", "skyledger-api",
               "--rate", "1000", "--burst", "1000",
               "--import", "tests.runners.pipeline_units"]  # fmt: skip
    log = (folder / "serve.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/api/v1/health", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"skyledger serve did not start: {(folder / 'serve.log').read_text()}")
        time.sleep(0.1)
    try:
        yield Served(base, ledger, tokens, dex)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        ledger.close()


def replayed(ledger: Ledger, text: str) -> None:
    """Replay the job as variants to diff: the same job; a stricter B and a new T2 entry;
    the same job limited to ZTF21abiuvdk (A follows it) and a stock only B follows; and
    the job with channel B alone."""
    accepted: dict[str, set[str]] = {}
    for event in ledger.read(types=[FilterDecided]):
        if isinstance(event, FilterDecided) and event.accepted:
            accepted.setdefault(event.stream, set()).add(event.channel)
    b_only = sorted(s for s, channels in accepted.items() if channels == {"B"})[0]
    stricter = text.replace("config: {n: 1}", "config: {n: 3}").replace(
        "{unit: TotalFromCounts}]",
        "{unit: TotalFromCounts}, {unit: BandPoints, config: {band: g}}]",
    )
    for variant, job, kw in (
        ("same", text, {}),
        ("stricter", stricter, {}),
        ("narrow", text, {"limits": Limits(stocks=frozenset({"ZTF21abiuvdk", b_only}))}),
        ("b-only", text, {"channels": ["B"]}),
    ):
        ReplayRunner(parse_job(job), job, ledger, variant, read_model=False, **kw).run()  # type: ignore[arg-type]


def alice(served: Served, client: str = "skyledger-api", secret: str = "api-secret") -> str:
    return served.dex.password_token("alice", "alice-password", client, secret).id_token


def of_b_only(served: Served) -> dict[str, set[str]]:
    """Return what belongs to channel B alone: stocks A does not follow, states and
    results A may not see, B's reactions (read from the read model, as the operator)."""
    from skyledger.projections import models as m
    from skyledger.projections.readmodel import ReadModel, readmodel_url

    model = ReadModel(readmodel_url(served.ledger.settings.ledger))
    with model, model.engine.connect() as conn:
        model.create()
        model.catch_up(served.ledger)
        follow: dict[str, set[str]] = {}
        for stock, channel in conn.execute(
            m.StockChannel.__table__.select().with_only_columns(
                m.StockChannel.stock, m.StockChannel.channel)):  # fmt: skip
            follow.setdefault(stock, set()).add(channel)
        states: dict[str, set[str]] = {}
        for state, channel in conn.execute(m.StateChannel.__table__.select().with_only_columns(
                m.StateChannel.state_id, m.StateChannel.channel)):  # fmt: skip
            states.setdefault(state, set()).add(channel)
        results = conn.execute(m.Result.__table__.select().with_only_columns(
            m.Result.result_id, m.Result.subject)).all()  # fmt: skip
        keys = conn.execute(m.Reaction.__table__.select().with_only_columns(
            m.Reaction.idempotency_key)).scalars().all()  # fmt: skip
    return {
        "stocks": {s for s, c in follow.items() if "A" not in c},
        "states": {s for s, c in states.items() if "A" not in c},
        "results": {r for r, subject in results if "A" not in states.get(subject, {"A"})},
        "reactions": set(keys),
    }


def test_without_a_credential_only_health_and_the_schema_answer(served: Served) -> None:
    assert served.get("/api/v1/health").json()["status"] == "ok"
    schema = served.get("/api/v1/openapi.json")
    assert schema.status_code == 200
    assert "/api/v1/stocks" in schema.json()["paths"]
    refused = served.get("/api/v1/stocks")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["www-authenticate"].startswith("Bearer")
    problem = refused.json()
    assert (problem["status"], problem["title"]) == (401, "Unauthorized")
    assert "credential is needed" in problem["detail"]


def test_a_channels_reader_sees_its_channel_and_lists_page(served: Served) -> None:
    carol = served.tokens["carol"]
    me = served.get("/api/v1/me", carol).json()
    assert (me["identities"], me["channels"], me["programids"]) == (["user:carol"], ["A"], [1])
    first = served.get("/api/v1/stocks", carol, limit=2).json()
    assert len(first["items"]) == 2
    rows = list(first["items"])
    cursor = first["next"]
    while cursor:
        page = served.get("/api/v1/stocks", carol, limit=2, cursor=cursor).json()
        assert page["position"] == first["position"]
        rows += page["items"]
        cursor = page["next"]
    every = served.get("/api/v1/stocks", carol, limit=1000).json()["items"]
    assert rows == every
    assert every
    assert all(s["channels"] == ["A"] for s in every)
    bob = served.get("/api/v1/stocks", served.tokens["bob"], limit=1000).json()["items"]
    assert len(bob) > len(every)
    csv = served.get("/api/v1/stocks", carol, limit=1000, format="csv")
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.splitlines()
    assert lines[0].startswith("stock,first_position")
    assert len(lines) == len(every) + 1
    assert csv.headers["skyledger-position"] == str(first["position"])
    view = served.get("/api/v1/stocks/ZTF21abiuvdk", carol).json()
    assert len([d for d in view["datapoints"] if d["kind"] == "detection"]) == 34
    assert {d["kind"] for d in view["datapoints"]} == {"detection"}  # upper limits apart:
    assert {d["kind"] for d in view["upper_limits"]} == {"upper_limit"}
    assert len(view["upper_limits"]) == view["stock"]["n_upper_limits"] > 0
    found = httpx.post(served.url + "/api/v1/stocks/lookup", timeout=60,
                       headers={"Authorization": f"Bearer {carol}"},
                       json={"stocks": ["ZTF21abiuvdk", "ZTF99nothing"]}).json()  # fmt: skip
    assert ([s["stock"] for s in found["items"]], found["missing"]) == (
        ["ZTF21abiuvdk"], ["ZTF99nothing"])  # fmt: skip
    too_many = httpx.post(served.url + "/api/v1/stocks/lookup", timeout=60,
                          headers={"Authorization": f"Bearer {carol}"},
                          json={"stocks": [f"s{i}" for i in range(1001)]})  # fmt: skip
    assert too_many.status_code == 400
    assert too_many.headers["content-type"] == "application/problem+json"


B_PARAMS = [{}, {"channel": "B"}, {"channel": "B", "limit": 1000}, {"stock": "ZTF21abiuvdk"},
            {"entry": "TotalFromCounts", "limit": 1000}, {"ra": 0.8143, "dec": 16.1457,
            "radius": 36000}, {"since": 0, "limit": 10000},
            {"a": "same", "b": "stricter", "limit": 1000}, {"a": "narrow", "b": "stricter"},
            {"a": "stricter", "b": "b-only"}]  # fmt: skip


def test_a_reader_of_channel_a_finds_nothing_of_channel_b_on_any_route(served: Served) -> None:
    secret = of_b_only(served)
    assert secret["stocks"]
    assert secret["results"]
    assert secret["reactions"]  # only B selects reactions
    carol = served.tokens["carol"]
    with httpx.Client(base_url=served.url, timeout=60) as client:
        every_route_keeps(client, carol, secret, B_PARAMS, unseen='"B"')
    feed = served.get("/api/v1/changes", carol, since=0, limit=10000).text.splitlines()
    assert json.loads(feed[-1])["kind"] == "end"
    assert any(json.loads(line)["kind"] == "result" for line in feed)


def cli_diff(served: Served, a: str, b: str) -> dict[str, Any]:
    """Return what ``skyledger diff A B --json`` prints (the test units imported first)."""
    code = "import tests.runners.pipeline_units; from skyledger.runners.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "diff", a, b, "--ledger", served.ledger.url, "--json"],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def test_the_diff_over_http_is_the_clis_for_a_reader_of_every_channel(served: Served) -> None:
    dana = served.tokens["dana"]
    for a, b in (("same", "stricter"), ("narrow", "stricter")):
        answer = served.get("/api/v1/diff", dana, a=a, b=b, limit=1000)
        assert answer.status_code == 200, answer.text
        assert answer.json() == cli_diff(served, a, b)
    found = answer.json()
    assert found["compared"]["limited_by"] == ["narrow"]
    assert len(found["compared"]["stocks"]) == found["stocks"] == 2
    assert "ZTF21abiuvdk" in found["compared"]["stocks"]
    cut = served.get("/api/v1/diff", dana, a="same", b="stricter", limit=1).json()
    whole = Counter(c["entry"] for c in cli_diff(served, "same", "stricter")["changes"])
    assert whole["BandPoints"] > 1
    assert cut["cut"] == {entry: n - 1 for entry, n in whole.items() if n > 1}
    assert Counter(c["entry"] for c in cut["changes"]) == dict.fromkeys(whole, 1)


def test_a_reader_of_channel_a_diffs_channel_a_alone(served: Served) -> None:
    secret = of_b_only(served)
    carol = served.tokens["carol"]
    every = cli_diff(served, "same", "stricter")
    assert {c["stock"] for c in every["changes"]} & secret["stocks"]
    assert every["channels"]["B"]["only_a"]  # the stricter B
    found = served.get("/api/v1/diff", carol, a="same", b="stricter", limit=1000).json()
    mine = served.get("/api/v1/stocks", carol, limit=1000).json()["items"]
    assert found["stocks"] == len(mine) < every["stocks"]
    assert list(found["channels"]) == ["A"]
    assert found["entries"]["BandPoints"]["added"] == len(mine)
    assert {c["stock"] for c in found["changes"]} == {s["stock"] for s in mine}
    narrow = served.get("/api/v1/diff", carol, a="narrow", b="stricter").json()
    assert narrow["compared"]["stocks"] == ["ZTF21abiuvdk"]  # not the stock only B follows
    # A variant of channel B alone is unknown to carol, as one that does not exist.
    unseen = served.get("/api/v1/diff", carol, a="same", b="b-only")
    missing = served.get("/api/v1/diff", carol, a="same", b="b-none")
    assert (unseen.status_code, missing.status_code) == (404, 404)
    assert unseen.headers["content-type"] == "application/problem+json"
    assert unseen.json()["detail"] == "no variant or run 'b-only'"
    assert missing.json()["detail"] == "no variant or run 'b-none'"
    assert served.get("/api/v1/diff", served.tokens["bob"], a="same", b="b-only").is_success
    # A job file is not read over HTTP.
    for spec in ("job.yaml", "../../etc/passwd"):
        refused = served.get("/api/v1/diff", carol, a=spec, b="same")
        assert refused.status_code == 422
        assert "a job file is not read over HTTP" in refused.json()["detail"]


def forged(served: Served, claims: dict[str, Any], key: Any, alg: str, kid: str) -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def bad_tokens(served: Served) -> dict[str, str]:
    """Return credentials every route must refuse, by what is wrong with them."""
    good = alice(served)
    header = jwt.get_unverified_header(good)
    claims = jwt.decode(good, options={"verify_signature": False})
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    none = (base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": header["kid"]}).encode())
            .rstrip(b"=").decode() + "." + good.split(".")[1] + ".")  # fmt: skip
    jwks = httpx.get(served.dex.discovery["jwks_uri"], timeout=10).json()  # type: ignore[arg-type]
    public = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwks["keys"][0]))
    pem = public.public_bytes(serialization.Encoding.PEM,  # type: ignore[union-attr]
                              serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
    revoked = issue_token(served.ledger, "user:carol")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "skyledger.runners.cli",
            "token",
            "revoke",
            revoked.split("_")[1],
            "--ledger",
            served.ledger.url,
        ],
        check=True,
        capture_output=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return {
        "expired token": served.tokens["expired"],
        "revoked token": revoked,
        "unknown token": make_token()[0],
        "wrong audience": alice(served, "other-app", "other-secret"),
        "wrong issuer": forged(
            served, claims | {"iss": "http://127.0.0.1:1/dex"}, other, "RS256", header["kid"]
        ),
        "re-signed": forged(served, claims, other, "RS256", header["kid"]),
        "alg none": none,
        "HS256 with the public key": _hs256(claims, pem, header["kid"]),
        "expired JWT": forged(
            served, claims | {"exp": int(time.time()) - 3600}, other, "RS256", header["kid"]
        ),
        "garbled": good[:-10] + "AAAAAAAAAA",
    }


def _hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """Sign with HMAC by hand (PyJWT refuses a PEM as an HMAC secret, as it should)."""
    import hashlib
    import hmac

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = part(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(mac)}"


def test_bad_credentials_are_refused_on_every_route(served: Served) -> None:
    good = alice(served)
    me = served.get("/api/v1/me", good).json()
    assert "team:ampelproject/dev" in me["identities"]
    assert me["channels"] == ["A"]
    schema = served.get("/api/v1/openapi.json").json()
    open_routes = {"/api/v1/health", "/api/v1/openapi.json"}
    routes = [(m, fill(p, {"stocks": {"ZTF21abiuvdk"}, "results": {"x"}, "states": set(),
                           "reactions": set()})[0])
              for p, ms in schema["paths"].items() for m in ms if p not in open_routes]  # fmt: skip
    assert len(routes) >= 8
    for why, token in bad_tokens(served).items():
        for method, path in routes:
            answer = httpx.request(
                method.upper(),
                served.url + path,
                timeout=60,
                headers={"Authorization": f"Bearer {token}"},
                json={"stocks": ["x"]} if method == "post" else None,
            )
            assert answer.status_code == 401, (why, method, path, answer.text)
            assert token not in answer.text
            assert answer.json()["detail"].startswith("credential refused"), (why, answer.text)


def test_the_change_feed_resumes_from_the_last_position_seen(served: Served) -> None:
    bob = served.tokens["bob"]
    whole = [json.loads(line) for line in served.get("/api/v1/changes", bob, since=0,
                                                      limit=10000).text.splitlines()]  # fmt: skip
    end = whole.pop()
    assert end["kind"] == "end"
    assert {c["kind"] for c in whole} == {"state", "result", "reaction"}
    got: list[dict[str, Any]] = []
    since = 0
    while True:
        lines = [json.loads(line) for line in served.get("/api/v1/changes", bob, since=since,
                                                          limit=7).text.splitlines()]  # fmt: skip
        last = lines.pop()
        got += lines
        if since == last["position"]:
            break
        since = last["position"]
    assert got == whole
    positions = [c["position"] for c in got]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)


def test_a_signed_in_user_makes_lists_and_revokes_a_token_of_their_own(served: Served) -> None:
    good = alice(served)
    made = httpx.post(served.url + "/api/v1/tokens", timeout=60, json={"name": "laptop"},
                      headers={"Authorization": f"Bearer {good}"})  # fmt: skip
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert token.startswith("slpat_")
    assert served.get("/api/v1/me", token).json()["channels"] == ["A"]
    mine = served.get("/api/v1/tokens", good).json()
    assert [t["name"] for t in mine] == ["laptop"]
    assert "token" not in mine[0]
    assert mine[0]["last_used"] is not None  # it was used for /me above
    by_token = httpx.post(served.url + "/api/v1/tokens", timeout=60, json={},
                          headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert by_token.status_code == 403  # a token does not make tokens
    gone = httpx.delete(served.url + f"/api/v1/tokens/{made.json()['token_id']}", timeout=60,
                        headers={"Authorization": f"Bearer {good}"})  # fmt: skip
    assert gone.status_code == 204
    assert served.get("/api/v1/me", token).status_code == 401


def test_reactions_list_by_channel_and_page_as_of_their_first_page(served: Served) -> None:
    bob, carol = served.tokens["bob"], served.tokens["carol"]
    every = served.get("/api/v1/reactions", bob, limit=1000).json()
    keys = [x["idempotency_key"] for x in every["items"]]
    assert set(keys) == of_b_only(served)["reactions"]  # B's selection made them all
    assert all(x["channels"] == ["B"] for x in every["items"])
    positions = [x["position"] for x in every["items"]]
    assert positions == sorted(positions, reverse=True)  # newest first
    assert served.get("/api/v1/reactions", carol, limit=1000).json()["items"] == []  # A's
    paged, cursor = [], None
    while True:
        page = served.get("/api/v1/reactions", bob, limit=3,
                          **({"cursor": cursor} if cursor else {})).json()  # fmt: skip
        paged += [x["idempotency_key"] for x in page["items"]]
        assert page["position"] == every["position"]  # every page as of the first's
        cursor = page["next"]
        if cursor is None:
            break
    assert paged == keys
    stock = next(x["stock"] for x in every["items"] if x["stock"])
    view = served.get(f"/api/v1/stocks/{stock}", bob).json()
    of_stock = served.get("/api/v1/reactions", bob, stock=stock).json()["items"]
    assert {x["idempotency_key"] for x in of_stock} == {
        x["idempotency_key"] for x in view["reactions"]}  # fmt: skip
    statuses = {x["status"] for x in every["items"]}
    for status in statuses:
        only = served.get("/api/v1/reactions", bob, status=status, limit=1000).json()["items"]
        assert [x["idempotency_key"] for x in only] == [
            x["idempotency_key"] for x in every["items"] if x["status"] == status]  # fmt: skip
    earlier = min(positions)  # as of the first reaction's position: it alone (and ties)
    then = served.get("/api/v1/reactions", bob, as_of=str(earlier), limit=1000).json()
    assert {x["idempotency_key"] for x in then["items"]} == {
        x["idempotency_key"] for x in every["items"] if x["position"] <= earlier}  # fmt: skip
    csv = served.get("/api/v1/reactions", bob, format="csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("idempotency_key,stock,")
    assert served.get("/api/v1/reactions", bob, status="sent").status_code == 400


def test_stocks_by_variant_are_those_its_channels_filters_accepted(served: Served) -> None:
    dana, carol = served.tokens["dana"], served.tokens["carol"]
    runs = {e.variant: e for e in served.ledger.read(types=[RunStarted])
            if isinstance(e, RunStarted)}  # fmt: skip

    def accepted(variant: str, channels: set[str]) -> set[str]:
        """The stocks the variant's channel filters (name, unit, configuration) accepted."""
        mine = {(u.role[7:], u.provenance.unit, u.provenance.config) for u in runs[variant].units
                if u.role.startswith("filter:") and u.role[7:] in channels}  # fmt: skip
        return {e.stream for e in served.ledger.read(types=[FilterDecided])
                if isinstance(e, FilterDecided) and e.accepted
                and (e.channel, e.provenance.unit, e.provenance.config) in mine}  # fmt: skip

    def listed(token: str, **params: Any) -> set[str]:
        page = served.get("/api/v1/stocks", token, limit=1000, **params).json()
        return {s["stock"] for s in page["items"]}

    stricter = listed(dana, variant="stricter", channel="B")
    assert stricter == accepted("stricter", {"B"})
    assert stricter < listed(dana, variant="same", channel="B")  # n 3 takes fewer than n 1
    assert listed(dana, variant="same") == listed(dana)  # the same job: the same stocks
    assert listed(carol, variant="stricter") == accepted("stricter", {"A"})  # A's only
    assert served.get("/api/v1/stocks", dana, variant="nope").status_code == 404
