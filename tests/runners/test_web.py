"""The web pages as a person meets them, in headless Chromium (Debian's, driven by
Playwright) against ``create_app`` served on loopback, over a ledger of real ZTF alerts
with two channels: A (eight detections or more, so ZTF21abiuvdk and few others) and B
(any alert). Sign-in with a personal access token and with Dex's own sign-in page
(authorization code with PKCE); the light curve of ZTF21abiuvdk draws every datapoint
the ledger holds, per band; a user of channel A cannot open what only B follows."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tests.runners.pipeline_units  # noqa: F401  (registers the test units)
from skyledger.ledger import DatapointAdded, Ledger, ResultDerived
from skyledger.ledger.access import AccessGranted, TokenRevoked
from skyledger.projections.diff import scoped_diff
from skyledger.projections.listing import ResultQuery, list_results
from skyledger.projections.queries import DatapointRow, stock_rows
from skyledger.projections.scope import Scope
from skyledger.runners.cli_common import model_of
from skyledger.runners.job import parse_job
from skyledger.runners.local import LocalRunner
from skyledger.runners.oidc import OidcSettings, OidcVerifier
from skyledger.runners.oidc_provider import EmbeddedDex
from skyledger.runners.replay import ReplayRunner, side_of
from skyledger.runners.server import ApiSettings, create_app
from skyledger.runners.tiers import JobUnits, run_started
from skyledger.runners.web.lightcurve import draw
from skyledger.runners.web.signin import OidcClient
from skyledger.units.sources import FileSource
from tests.runners.api_kit import issue_token, serving
from tests.runners.web_kit import browser

pytestmark = [pytest.mark.oidc, pytest.mark.slow]

DATA = Path(__file__).resolve().parents[1] / "data" / "ztf"
FILES = [DATA / "night" / "fink-client_sample_part-00001_n54.avro",
         *sorted((DATA / "ZTF21abiuvdk").glob("*.avro"))]  # fmt: skip
SN = "ZTF21abiuvdk"
JOB = """
name: web
channels:
  - {name: A, filter: {unit: MinDetections, config: {n: 8}}, autocomplete: true}
  - {name: B, filter: {unit: MinDetections, config: {n: 1}}}
combiner: {unit: LightCurveCombiner}
t2: [{unit: T2LightCurveFeatures}, {unit: T2CandidateScore}]
"""


class Site:
    """The served pages and what the tests know of their ledger."""

    def __init__(self, url: str, base: str, tokens: dict[str, str], b_only: list[str]):
        self.url, self.base, self.tokens, self.b_only = url, base, tokens, b_only


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, dex: EmbeddedDex) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("web")
    url = f"sqlite:///{folder / 'ledger.sqlite'}"
    with Ledger.open(url) as ledger:
        source = FileSource({"paths": [str(f) for f in FILES]})
        LocalRunner(parse_job(JOB), JOB, ledger, [source], read_model=False).run()
        ledger.append([
            AccessGranted(stream="access:A", channel="A", member="user:amy", by="test"),
            AccessGranted(stream="access:B", channel="B", member="user:ben", by="test"),
            AccessGranted(stream="access:A", channel="A", member="team:ampelproject/dev",
                          by="test"),
        ])  # fmt: skip
        looser = JOB.replace("{n: 8}", "{n: 5}")  # a variant whose channel A takes more
        ReplayRunner(parse_job(looser), looser, ledger, "looser", read_model=False).run()
        job = parse_job(JOB)  # a run still running (its tiers' lags on the status page)
        ledger.append([run_started(job, JOB, JobUnits(job, sources=[]), "still-running")])
        tokens = {"A": issue_token(ledger, "user:amy"), "B": issue_token(ledger, "user:ben"),
                  "revoked": issue_token(ledger, "user:amy")}  # fmt: skip
        revoked = tokens["revoked"].split("_")[1]
        ledger.append([TokenRevoked(stream=f"token:{revoked}", token_id=revoked, by="test")])
        stocks = sorted({e.stream for e in ledger.read() if isinstance(e, DatapointAdded)})
        with model_of(ledger) as model:
            every = stock_rows(model, stocks, None)
        b_only = sorted(s for s, row in every.items() if set(row.channels) == {"B"})
        assert b_only
        assert SN in every
        assert "A" in every[SN].channels
    oidc = OidcVerifier(
        OidcSettings(issuer=dex.issuer, audience=("skyledger-api", "skyledger-web"))
    )
    app = create_app(ApiSettings(ledger=url), oidc, OidcClient(dex.issuer, "skyledger-web"))
    with serving(app) as client:
        yield Site(url, str(client.base_url).rstrip("/"), tokens, b_only)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as launched:
        yield launched


def signed_in(chromium: Any, site: Site, who: str) -> Any:
    """Return a page whose browser signed in with a channel's token, through the form."""
    page = chromium.new_context().new_page()
    page.goto(f"{site.base}/signin")
    page.fill("#token", site.tokens[who])
    page.click("form.stacked button[type=submit]")
    page.wait_for_url(f"{site.base}/")
    return page


def ledger_points(site: Site, stock: str) -> Counter[tuple[str, str]]:
    """Count the distinct datapoints the ledger holds of a stock, by band and kind."""
    seen: dict[str, tuple[str, str]] = {}
    with Ledger.open(site.url, create=False) as ledger:
        for e in ledger.read():
            if isinstance(e, DatapointAdded) and e.stream == stock:
                seen[e.datapoint_id] = (str(e.body.get("band")), e.kind)
    return Counter(seen.values())


def test_the_light_curve_draws_every_datapoint_of_the_ledger_per_band(
    chromium: Any, site: Site
) -> None:
    page = signed_in(chromium, site, "A")
    page.goto(f"{site.base}/stocks/{SN}")
    assert page.text_content("h1#stock") == SN
    held = ledger_points(site, SN)
    assert {kind for _, kind in held} >= {"detection", "upper_limit"}
    drawn: Counter[tuple[str, str]] = Counter()
    for mark in page.query_selector_all("svg.lightcurve .mark"):
        drawn[(mark.get_attribute("data-band"), mark.get_attribute("data-kind"))] += 1
    assert drawn == held
    for band in {b for b, _ in held}:  # the table under the figure says the same
        row = page.query_selector(f'#band-counts tr[data-band="{band}"]')
        cells = [c.text_content() for c in row.query_selector_all("td")]
        assert cells[1:3] == [str(held[(band, "detection")]), str(held[(band, "upper_limit")])]
    first = page.query_selector("svg.lightcurve circle.detection")  # values on hover
    title = first.query_selector("title").text_content()
    assert re.search(r"detection · [gri] · JD 24\d{5}\.\d{5} .* mag \d+\.\d{3} ± \d\.\d{3}", title)
    assert page.query_selector("svg.lightcurve path.upper-limit title") is not None
    sexagesimal = r"\(\d\d:\d\d:\d\d\.\d\d [+-]\d\d:\d\d:\d\d\.\d\)"
    radec = page.text_content("#radec").strip()
    assert re.fullmatch(r"\d+\.\d{6} [+-]\d+\.\d{6} " + sexagesimal, radec)
    links = {a.text_content(): a.get_attribute("href") for a in page.query_selector_all(".links a")}
    assert links["Fink"] == f"https://fink-portal.org/{SN}"
    assert links["ALeRCE"] == f"https://alerce.online/object/{SN}"
    assert links["TNS"].startswith("https://www.wis-tns.org/search?ra=")
    images = page.query_selector_all(".cutouts img")
    assert len(images) == 3
    for image in images:  # each cutout decoded from the packet and drawn
        image.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image)
    assert page.query_selector_all(".result-group h3")  # results, with the variant that ran them
    assert "web (as run)" in page.text_content(".result-group .variants")
    states = page.query_selector_all("#states tbody tr")  # each state, with what it left out
    assert states
    assert page.text_content("#states summary").startswith(f"States ({len(states)}")
    link = states[0].query_selector("a").get_attribute("href")
    assert page.goto(f"{site.base}{link}").status == 200


def test_a_channel_a_user_cannot_open_what_only_b_follows(chromium: Any, site: Site) -> None:
    page = signed_in(chromium, site, "A")
    other = site.b_only[0]
    answer = page.goto(f"{site.base}/stocks/{other}")
    assert answer.status == 404
    assert other in page.text_content("p.problem")
    assert page.query_selector("svg.lightcurve") is None
    assert page.goto(f"{site.base}/channels/B").status == 404
    cutout = page.goto(f"{site.base}/stocks/{other}/cutouts/x/science.png")
    assert cutout.status == 404
    page.goto(f"{site.base}/?find=ZTF2")  # a prefix finds only A's stocks
    found = {a.text_content() for a in page.query_selector_all("ul.found a")}
    assert SN in found or page.url.endswith(f"/stocks/{SN}")
    assert not found & set(site.b_only)
    page.goto(f"{site.base}/stocks")
    listed = {a.text_content() for a in page.query_selector_all("#stocks tbody a")}
    assert SN in listed
    assert not listed & set(site.b_only)
    with Ledger.open(site.url, create=False) as ledger:  # a result of a B-only stock
        theirs = next(e.id for e in ledger.read()
                      if isinstance(e, ResultDerived) and e.stream == other)  # fmt: skip
    assert page.goto(f"{site.base}/lineage/{theirs}").status == 404
    mine = signed_in(chromium, site, "B")  # channel B's user opens it
    assert mine.goto(f"{site.base}/stocks/{other}").status == 200
    assert mine.goto(f"{site.base}/lineage/{theirs}").status == 200
    assert mine.query_selector_all("#lineage li.step")


def test_ranked_candidates_equal_the_query_layer(chromium: Any, site: Site) -> None:
    page = signed_in(chromium, site, "B")
    page.goto(f"{site.base}/channels/B")
    options = [
        o.get_attribute("value") for o in page.query_selector_all("select[name=rank] option")
    ]
    assert "T2CandidateScore:score" in options
    page.select_option("select[name=rank]", "T2CandidateScore:score")
    page.fill("input[name=min]", "0.2")
    page.click("#rank-form button")
    page.wait_for_url(re.compile(r".*min=0\.2.*"))
    shown = [(r.query_selector("a").text_content(), r.query_selector("td.value").text_content())
             for r in page.query_selector_all("#candidates tbody tr")]  # fmt: skip
    with Ledger.open(site.url, create=False) as ledger, model_of(ledger) as model:
        query = ResultQuery.parse({"unit": "T2CandidateScore", "path": "score", "channel": "B",
                                   "min": 0.2, "latest": True})  # fmt: skip
        expected = list_results(model, query, scope=Scope(channels=frozenset({"B"})), limit=50)
    assert shown == [(r.stock, f"{r.value:.4g}") for r in expected.items]
    assert shown
    assert all(float(v) >= 0.2 for _, v in shown)
    values = [float(v) for _, v in shown]
    assert values == sorted(values, reverse=True)


def test_signing_in_at_the_issuer_with_pkce(chromium: Any, site: Site, dex: EmbeddedDex) -> None:
    page = chromium.new_context().new_page()
    answer = page.goto(f"{site.base}/stocks/{SN}")  # not signed in: the way to sign in
    assert answer.status == 401
    assert page.query_selector("#signin-oidc") is not None
    page.click("#signin-oidc")
    page.wait_for_url(re.compile(re.escape(dex.issuer) + ".*"))  # Dex's own sign-in page
    assert "code_challenge" not in page.url or "S256" in page.url
    page.fill("input[name=login]", "alice@example.org")
    page.fill("input[name=password]", "alice-password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.base}/stocks/{SN}")  # back where she was going
    assert page.text_content("h1#stock") == SN
    assert page.text_content("header .who span") == "user:alice"
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["skyledger_session"]["httpOnly"]
    assert "skyledger_signin" not in cookies  # the flow's state is gone
    assert page.goto(f"{site.base}/stocks/{site.b_only[0]}").status == 404  # A's, not B's
    page.goto(f"{site.base}/tokens")  # she makes herself a token for channel A
    page.fill("input[name=name]", "notebook")
    page.check("input[name=channel][value=A]")
    page.click("#make-token button")
    made = page.text_content("#new-token")
    assert made.startswith("slpat_")
    me = httpx.get(f"{site.base}/api/v1/me", headers={"Authorization": f"Bearer {made}"})
    assert me.status_code == 200
    assert me.json()["channels"] == ["A"]
    assert "user:alice" in me.json()["identities"]
    page.goto(f"{site.base}/tokens")  # shown once: the list has its id, not its secret
    assert made not in page.content()
    assert made.split("_")[1] in page.text_content("#tokens")
    page.click(f'tr[data-token="{made.split("_")[1]}"] button')
    page.wait_for_url(f"{site.base}/tokens")
    assert "revoked" in page.text_content(f'tr[data-token="{made.split("_")[1]}"]')
    gone = httpx.get(f"{site.base}/api/v1/me", headers={"Authorization": f"Bearer {made}"})
    assert gone.status_code == 401
    page.click("header .who button")  # sign out
    page.wait_for_url(f"{site.base}/signin")
    assert page.goto(f"{site.base}/stocks/{SN}").status == 401


def test_a_bad_credential_is_refused_with_the_reason(chromium: Any, site: Site) -> None:
    page = chromium.new_context().new_page()
    page.goto(f"{site.base}/signin")
    page.fill("#token", site.tokens["revoked"])
    page.click("form.stacked button[type=submit]")
    assert "credential refused: token revoked" in page.text_content("p.refused")
    assert site.tokens["revoked"] not in page.content()
    forged = page.goto(f"{site.base}/signin/callback?code=x&state=y")  # no flow under way
    assert forged.status == 401
    assert "no sign-in was under way" in page.text_content("p.refused")
    page.context.add_cookies([{"name": "skyledger_session", "value": "slpat_0000_nope",
                               "url": site.base}])  # fmt: skip
    assert page.goto(f"{site.base}/").status == 401  # a cookie is checked like a bearer
    assert "credential refused" in page.text_content("p.refused")
    page = signed_in(chromium, site, "A")  # a token cannot make tokens
    page.goto(f"{site.base}/tokens")
    assert page.query_selector("#make-token") is None
    other_site = page.request.post(f"{site.base}/tokens", headers={"Origin": "https://evil.example"},
                                   form={"name": "x"})  # fmt: skip
    assert other_site.status == 403


def test_status_and_lineage_pages(chromium: Any, site: Site) -> None:
    page = signed_in(chromium, site, "A")
    page.goto(f"{site.base}/status")
    with Ledger.open(site.url, create=False) as ledger:
        head = ledger.head()
        result = [e for e in ledger.read() if isinstance(e, ResultDerived) and e.stream == SN][-1]
    assert int(page.text_content("#head")) >= head
    assert page.query_selector_all("#runs tbody tr")
    rows = page.query_selector_all(".run-lags tbody tr")  # the run still running, per tier
    shown = {r.query_selector("td").text_content(): [int(c.text_content()) for c in
             r.query_selector_all("td.num")] for r in rows}  # fmt: skip
    assert set(shown) == {"T0", "T1", "T2", "T3"}
    for _tier, (position, tier_head, lag) in shown.items():
        assert lag == tier_head - position >= 0
    assert shown["T1"][0] > 0
    assert shown["T2"][0] > 0
    page.goto(f"{site.base}/lineage/{result.id}")
    steps = page.query_selector_all("#lineage li.step")
    assert steps[0].get_attribute("data-id") == result.id
    kinds = {t.text_content() for t in page.query_selector_all("#lineage .type")}
    assert {"StateCombined", "DatapointAdded", "AlertReceived", "RunStarted"} <= kinds
    assert "made by" in page.text_content("#lineage")


def test_the_light_curve_of_fluxes_only_and_of_nothing() -> None:
    def point(kind: str, jd: float | None, band: str, flux: float | None) -> DatapointRow:
        return DatapointRow(datapoint_id=f"{kind}{jd}", kind=kind, jd=jd, band=band, mag=None,
                            magerr=None, flux=flux, fluxerr=1.0, limmag=None, body={},
                            event_id="e", position=1, first_position=1, first_alert=None,
                            superseded_count=0)  # fmt: skip

    curve = draw([point("detection", 2460000.5, "r", 12.0), point("forced", 2460001.5, "g", -3.0),
                  point("detection", None, "r", 5.0)])  # fmt: skip
    assert curve.axis == "flux"
    assert curve.undrawn == 1
    assert curve.drawn == {("r", "detection"): 1, ("g", "forced"): 1}
    assert "no datapoint" in draw([point("detection", None, "r", None)]).svg


def test_variants_compared_as_the_diff_has_them(chromium: Any, site: Site) -> None:
    page = signed_in(chromium, site, "A")
    page.goto(f"{site.base}/compare")
    labels = [o.text_content() for o in page.query_selector_all("select[name=a] option")]
    assert any(label.startswith("variant looser") for label in labels)
    page.select_option("select[name=a]", "looser")
    run = next(o.get_attribute("value") for o in page.query_selector_all("select[name=b] option")
               if o.text_content().startswith("run "))  # fmt: skip
    page.select_option("select[name=b]", run)
    page.click("#compare-form button")
    page.wait_for_url(re.compile(r".*/compare\?a=looser.*"))
    scope = Scope(channels=frozenset({"A"}))
    with Ledger.open(site.url, create=False) as ledger:
        a, b = (side_of(ledger, spec, job_files=False, scope=scope)[0] for spec in ("looser", run))
        found = scoped_diff(ledger, a, b, scope)
    moved = found.channels["A"]
    assert moved["only_a"]  # the looser variant's channel A took stocks the run's did not
    row = page.query_selector('#diff-counts tr[data-channel="A"]')
    cells = [c.text_content() for c in row.query_selector_all("td.num")]
    assert cells == [str(len(moved["only_b"])), str(len(moved["only_a"]))]
    assert page.query_selector('#diff-counts tr[data-channel="B"]') is None  # not hers
    for entry, n in found.entries.items():
        row = page.query_selector(f'#diff-counts tr[data-entry="{entry}"]')
        assert [c.text_content() for c in row.query_selector_all("td.num")] == [
            str(n[k]) for k in ("added", "removed", "changed", "same")]  # fmt: skip
    shown = {li.get_attribute("data-stock") for li in page.query_selector_all("ul.changes li")}
    assert shown == {c.stock for c in found.changes}
    assert not shown & set(site.b_only)
