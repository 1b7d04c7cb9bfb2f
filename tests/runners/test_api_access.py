"""Access from the command line (grants, policies and tokens as ledger events), the rate
limit per credential, and the API answering beside a run that writes the ledger."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import fastavro
import pytest
from sqlalchemy import or_, select

import tests.runners.pipeline_units  # noqa: F401  (registers the test units)
from skyledger.ledger import Ledger
from skyledger.ledger.access import AccessGranted, ChannelPolicySet, TokenRevoked
from skyledger.projections.overview import channels_of
from skyledger.projections.scope import Scope
from skyledger.runners.api.auth import RateLimit
from skyledger.runners.cli_common import model_of
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner
from skyledger.runners.server import ApiSettings, create_app
from skyledger.units.sources import FileSource
from tests.runners.api_kit import every_route_keeps, issue_token, serving
from tests.runners.test_cli import skyledger

DATA = Path(__file__).resolve().parents[1] / "data" / "ztf"
SN = sorted((DATA / "ZTF21abiuvdk").glob("*.avro"))
JOB = "name: x\nchannels: [{name: A}]\ncombiner: {unit: AllPoints}\nt2: [{unit: CountPoints}]\n"


def run(ledger: Ledger, files: list[Path]) -> None:
    source = FileSource({"paths": [str(f) for f in files]})
    LocalRunner(parse_job(JOB), JOB, ledger, [source], read_model=False).run()


def test_grants_policies_and_tokens_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger.open(url) as ledger:
        run(ledger, SN[:2])

    def cli(*args: str) -> str:
        done = skyledger(*args, "--ledger", url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done.stdout

    bad = skyledger("access", "grant", "A", "alice", "--ledger", url, cwd=tmp_path)
    assert bad.returncode == 2
    assert "give user:NAME, org:NAME or team:ORG/TEAM" in bad.stderr
    cli("access", "grant", "A", "team:ampelproject/dev", "--reason", "the SN team")
    cli("access", "grant", "A", "user:bob")
    cli("access", "revoke", "A", "user:bob")
    cli("access", "policy", "A", "--programids", "1")
    listed = json.loads(cli("access", "list", "--all", "--json"))
    grants = {g["member"]: g for g in listed["grants"]}
    assert grants["team:ampelproject/dev"]["revoked_position"] is None
    assert grants["user:bob"]["revoked_position"] > grants["user:bob"]["granted_position"]
    assert grants["user:bob"]["granted_by"].startswith("cli:")
    assert listed["policies"] == [{"channel": "A", "public": False, "programids": [1],
                                   "position": listed["policies"][0]["position"],
                                   "set_by": listed["policies"][0]["set_by"]}]  # fmt: skip
    from skyledger.projections.access import grants as current
    from skyledger.projections.access import tokens

    with Ledger.open(url, create=False) as ledger:
        model = model_of(ledger)
        with model:
            assert [g.member for g in current(model)] == ["team:ampelproject/dev"]
    made = json.loads(cli("token", "create", "--for", "user:carol", "--channel", "A",
                          "--days", "7", "--json"))  # fmt: skip
    assert made["token"].startswith(f"slpat_{made['token_id']}_")
    with Ledger.open(url, create=False) as ledger:
        stored = [e for e in ledger.read() if type(e).__name__ == "TokenIssued"]
    assert made["token"] not in stored[0].model_dump_json()  # only its digest is kept
    listed_tokens = json.loads(cli("token", "list", "--json"))
    assert [(t["token_id"], t["channels"]) for t in listed_tokens] == [(made["token_id"], ["A"])]
    assert "digest" not in listed_tokens[0]
    cli("token", "revoke", made["token_id"])
    with Ledger.open(url, create=False) as ledger:
        model = model_of(ledger)
        with model:
            assert tokens(model)[0].revoked_position is not None


def test_a_credential_over_its_rate_gets_429_with_retry_after(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger.open(url) as ledger:
        run(ledger, SN[:2])
        ledger.append([AccessGranted(stream="access:A", channel="A", member="user:x", by="t")])
        token = issue_token(ledger, "user:x")
    app = create_app(ApiSettings(ledger=url, rate=0.2, burst=2))
    with serving(app) as client:
        headers = {"Authorization": f"Bearer {token}"}
        answers = [client.get("/api/v1/stocks", headers=headers) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert int(answers[2].headers["retry-after"]) >= 1
        assert answers[2].json()["title"] == "Too many requests"
        assert token not in answers[2].text


def test_the_api_answers_beside_a_run_that_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger.open(url) as ledger:
        run(ledger, SN[:3])
        ledger.append([AccessGranted(stream="access:A", channel="A", member="user:x", by="t")])
    app = create_app(ApiSettings(ledger=url, catch_up_s=0.1))
    with serving(app) as client, Ledger.open(url) as ledger:
        token = issue_token(ledger, "user:x")  # made while the API serves
        headers = {"Authorization": f"Bearer {token}"}
        client.get("/api/v1/health")
        deadline = time.monotonic() + 60
        while client.get("/api/v1/me", headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "the token never became known"
            time.sleep(0.05)
        before = client.get("/api/v1/stocks/ZTF21abiuvdk", headers=headers).json()
        assert before["stock"]["n_alerts"] == 3
        run(ledger, SN[3:])  # a run writes while the API serves
        head = ledger.head()
        seen = client.get("/api/v1/health").json()["read_model"]
        deadline = time.monotonic() + 60
        while seen < head:  # the read model follows; the deadline moves with its progress
            time.sleep(0.05)
            now = client.get("/api/v1/health").json()["read_model"]
            if now > seen:
                seen, deadline = now, time.monotonic() + 60
            assert time.monotonic() < deadline, f"the read model stopped at {seen} of {head}"
        after = client.get("/api/v1/stocks/ZTF21abiuvdk", headers=headers).json()
        assert after["stock"]["n_alerts"] == len(SN)
        old = client.get("/api/v1/stocks/ZTF21abiuvdk", headers=headers,
                         params={"as_of": before["stock"]["last_position"]}).json()  # fmt: skip
        assert old["stock"]["n_alerts"] == 3


@pytest.mark.parametrize("path", ["/api/v1/nowhere", "/api/v1/stocks?limit=0"])
def test_errors_are_problem_documents(tmp_path: Path, path: str) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    Ledger.open(url).close()
    with serving(create_app(ApiSettings(ledger=url))) as client:
        answer = client.get(path, headers={"Authorization": "Bearer slpat_0123456789abcdef_x"})
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.status_code in (401, 404)
        assert set(answer.json()) >= {"type", "title", "status", "detail"}


def test_runs_lineage_and_changes_as_of_a_position_are_what_they_were_then(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger.open(url) as ledger:
        run(ledger, SN[:12])
        ledger.append([AccessGranted(stream="access:A", channel="A", member="user:x", by="t")])
        token = issue_token(ledger, "user:x")
    app = create_app(ApiSettings(ledger=url, catch_up_s=0.1))
    with serving(app) as client, Ledger.open(url) as ledger:
        headers = {"Authorization": f"Bearer {token}"}

        def reads(**params: Any) -> dict[str, Any]:
            feed = client.get("/api/v1/changes", headers=headers,
                              params={"until": params["as_of"]} if params else {})  # fmt: skip
            lines = [json.loads(line) for line in feed.text.splitlines()]
            ids = [c.get("result_id") or c.get("state_id") for c in lines[:-1]]
            return {
                "runs": client.get("/api/v1/runs", headers=headers, params=params).json(),
                "changes": lines,
                "lineage": {i: client.get(f"/api/v1/lineage/{i}", headers=headers,
                                          params=params).json() for i in ids if i},
            }  # fmt: skip

        middle = client.get("/api/v1/health").json()["read_model"]
        assert middle == ledger.head()
        then = reads()
        assert len(then["runs"]) == 1
        assert then["changes"][-1] == {"kind": "end", "position": middle}
        run(ledger, SN[12:])  # a second run, while the API serves
        head = ledger.head()
        deadline = time.monotonic() + 60
        while client.get("/api/v1/health").json()["read_model"] < head:
            assert time.monotonic() < deadline, "the read model did not follow"
            time.sleep(0.05)
        now = reads()
        assert len(now["runs"]) == 2
        assert len(now["changes"]) > len(then["changes"])
        assert reads(as_of=str(middle)) == then
        later = [c["result_id"] for c in now["changes"] if c.get("position", 0) > middle
                 and c["kind"] == "result"]  # fmt: skip
        assert later
        gone = client.get(f"/api/v1/lineage/{later[0]}", headers=headers,
                          params={"as_of": str(middle)})  # fmt: skip
        assert gone.status_code == 404
        too_far = client.get("/api/v1/runs", headers=headers, params={"as_of": str(2**64)})
        assert too_far.status_code == 400


NIGHT = DATA / "night" / "fink-client_sample_part-00001_n54.avro"
RIGHTS_JOB = """
name: rights
channels: [{name: A}, {name: B}]
combiner: {unit: AllPoints}
t2: [{unit: CountPoints}, {unit: TotalFromCounts}]
t3: [{unit: CollectReactor, config: {path: OUT}, select: {channels: [A]}}]
"""


def as_programme(source: Path, target: Path, programid: int, stocks: set[str] | None) -> Path:
    """Write a real ZTF packet again with its alerts of ``stocks`` (None: all) made of
    another programme: the candidate and, for a stock in ``stocks``, its whole history
    (no public packet holds anything but programme 1, public data)."""
    with source.open("rb") as fh:
        reader = fastavro.reader(fh)
        schema, codec, records = reader.writer_schema, reader.codec, list(reader)
    for record in records:
        if stocks is None or record["objectId"] in stocks:
            record["candidate"]["programid"] = programid
            for entry in (record.get("prv_candidates") or []) if stocks else []:
                entry["programid"] = programid
    with target.open("wb") as fh:
        fastavro.writer(fh, schema, records, codec=codec)
    return target


def of_private_stocks(ledger: Ledger) -> dict[str, set[str]]:
    """Return the ids of what is derived from data of programmes other than 1, as the
    operator reads them: such stocks, their states and results, and the reactions
    about them or about no one stock."""
    from skyledger.projections import models as m

    with model_of(ledger) as model, model.engine.connect() as conn:
        p, st, r, x = (t.__table__ for t in (m.StockProgramme, m.State, m.Result, m.Reaction))
        private = set(conn.execute(select(p.c.stock).where(p.c.programid != 1)).scalars())
        return {
            "stocks": private,
            "states": set(conn.execute(select(st.c.state_id).where(st.c.stock.in_(private)))
                          .scalars()),
            "results": set(conn.execute(select(r.c.result_id).where(r.c.stock.in_(private)))
                           .scalars()),
            "reactions": set(conn.execute(select(x.c.idempotency_key).where(
                or_(x.c.stock.is_(None), x.c.stock.in_(private)))).scalars()),
        }  # fmt: skip


def test_a_reader_limited_to_public_data_sees_nothing_derived_from_private_data(
    tmp_path: Path,
) -> None:
    with NIGHT.open("rb") as fh:
        night = sorted({r["objectId"] for r in fastavro.reader(fh)})
    private = set(night[::2])  # every other stock of the night: partnership data only
    files = [as_programme(NIGHT, tmp_path / "night.avro", 2, private)]
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    text = RIGHTS_JOB.replace("OUT", str(tmp_path / "out.txt"))
    with Ledger.open(url) as ledger:
        # the public alerts of ZTF21abiuvdk first, then Caltech ones (programme 3)
        public_run = FileSource({"paths": [str(f) for f in [*files, *SN[:20]]]})
        LocalRunner(parse_job(text), text, ledger, [public_run], read_model=False).run()
        before = ledger.head()
        later = [as_programme(f, tmp_path / f.name, 3, None) for f in SN[20:]]
        private_run = FileSource({"paths": [str(f) for f in later]})
        LocalRunner(parse_job(text), text, ledger, [private_run], read_model=False).run()
        ledger.append([
            AccessGranted(stream="access:A", channel="A", member="user:x", by="t"),
            AccessGranted(stream="access:B", channel="B", member="user:y", by="t"),
            ChannelPolicySet(stream="access:A", channel="A", public=False, programids=(1,), by="t"),
        ])  # fmt: skip
        x, y = issue_token(ledger, "user:x"), issue_token(ledger, "user:y")
        secret = of_private_stocks(ledger)
    assert secret["stocks"] == private | {"ZTF21abiuvdk"}
    assert secret["results"]
    assert secret["states"]
    assert secret["reactions"]
    with serving(create_app(ApiSettings(ledger=url))) as client:

        def get(path: str, token: str, **params: Any) -> Any:
            answer = client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
            return answer.json() if "changes" not in path else answer.text

        assert get("/api/v1/me", x)["programids"] == [1]
        public = {s["stock"] for s in get("/api/v1/stocks", x, limit=1000)["items"]}
        assert public == set(night) - private  # and not ZTF21abiuvdk: Caltech data since
        results = get("/api/v1/results", x, limit=1000)["items"]
        assert results
        assert {r["stock"] for r in results} <= public
        rows = get("/api/v1/stocks", y, limit=1000)["items"]
        assert {s["stock"] for s in rows} == set(night) | {"ZTF21abiuvdk"}  # every programme
        for row in rows:  # a cone around each stock finds it for B's reader, A's if public
            near = {"ra": row["ra"], "dec": row["dec"], "radius": 5}
            assert row["stock"] in {s["stock"] for s in get("/api/v1/stocks", y, **near)["items"]}
            seen = {s["stock"] for s in get("/api/v1/stocks", x, **near)["items"]}
            assert (row["stock"] in seen) == (row["stock"] in public), row["stock"]
        assert get("/api/v1/stocks/ZTF21abiuvdk", y)["stock"]["n_alerts"] == len(SN)
        # As of a position before the Caltech alerts, the stock was public data only.
        then = get("/api/v1/stocks/ZTF21abiuvdk", x, as_of=str(before))
        assert then["stock"]["n_alerts"] == 20
        assert "ZTF21abiuvdk" in get("/api/v1/changes", x, until=str(before))
        every_route_keeps(client, x, secret, PRIVATE_PARAMS)
        client.cookies.set("skyledger_session", x)  # the pages, for the same reader, too
        assert client.get("/stocks/ZTF21abiuvdk").status_code == 404
        home = client.get("/").text
        counts = dict(re.findall(r'/channels/(\w+)">\w+</a></td><td class="num">(\d+)<', home))
        in_a = get("/api/v1/stocks", x, channel="A", limit=1000)["items"]
        assert counts == {"A": str(len(in_a))}
        with Ledger.open(url, create=False) as ledger, model_of(ledger) as model:
            (every,) = [c.stocks for c in channels_of(model, Scope()) if c.channel == "A"]
        assert len(in_a) < every  # the operator's count holds the private ones
        found = client.get("/", params={"find": "ZTF"}).text
        assert not {n for n in re.findall(r'href="/stocks/(\w+)"', found)} & secret["stocks"]
        listed = client.get("/stocks").text
        assert set(re.findall(r'href="/stocks/(\w+)"', listed)) == public


PRIVATE_PARAMS = [{}, {"channel": "A", "limit": 1000}, {"stock": "ZTF21abiuvdk"},
                  {"entry": "TotalFromCounts", "limit": 1000}, {"ra": 0.8143, "dec": 16.1457,
                  "radius": 36000}, {"since": 0, "limit": 10000}]  # fmt: skip


def test_a_credential_remembered_is_refused_once_its_revocation_is_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger.open(url) as ledger:
        run(ledger, SN[:2])
        ledger.append([AccessGranted(stream="access:A", channel="A", member="user:x", by="t")])
        token = issue_token(ledger, "user:x")
    app = create_app(ApiSettings(ledger=url, catch_up_s=0.1))
    with serving(app) as client, Ledger.open(url) as ledger:
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(3):  # checked once, then remembered
            assert client.get("/api/v1/me", headers=headers).json()["channels"] == ["A"]
        token_id = token.split("_")[1]
        ledger.append([TokenRevoked(stream=f"token:{token_id}", token_id=token_id, by="t")])
        head = ledger.head()
        deadline = time.monotonic() + 60
        while client.get("/api/v1/health").json()["read_model"] < head:
            assert time.monotonic() < deadline, "the read model never read the revocation"
            time.sleep(0.05)
        refused = client.get("/api/v1/me", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["detail"] == "credential refused: token revoked"


def test_rate_buckets_that_filled_up_again_are_forgotten() -> None:
    now = [0.0]
    limit = RateLimit(rate=10.0, burst=5, clock=lambda: now[0])
    for k in range(10_000):
        assert limit.take(f"caller:{k}") == 0.0
    assert limit.take("busy") == 0.0
    for _ in range(5):
        limit.take("busy")
    assert limit.take("busy") > 0  # over its burst
    now[0] = 0.3  # the others' buckets are full again; busy's is not
    assert limit.take("new") == 0.0  # the 10,002nd caller: the full buckets are dropped
    assert len(limit) == 2  # busy (refilled to 3 of 5) and new
    assert [limit.take("busy") == 0.0 for _ in range(4)] == [True, True, True, False]
