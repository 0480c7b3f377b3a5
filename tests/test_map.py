"""musicmap map: the layout and labels on a generated graph, and the page in a real browser
(headless Chromium from Debian packages, driven by Selenium)."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, WORKDIR, musicmap

from musicmap import schemas, storage, synth
from musicmap.config import load_config
from musicmap.tools.map import layout

CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("MUSICMAP_ARTIFACTS", ROOT / "tests" / "artifacts"))


@pytest.fixture(scope="module")
def mapped(trained_small, tmp_path_factory):
    """(root, committed map) of the small trained model, made by the installed command from a
    folder outside the checkout (conftest.musicmap), which it leaves as it was."""
    root = tmp_path_factory.mktemp("map")
    for d in ("mpd", "graph", "model"):
        shutil.copytree(trained_small / d, root / d)
    before = set(WORKDIR.iterdir())
    p = musicmap("map", "--root", str(root))
    m = storage.open_committed(str(root / "map"))
    assert p.stdout.strip().splitlines()[-1] == f"open {m.path('index.html')}"
    assert "{{TITLE}}" not in storage.read_text(m.path("index.html"))    # the template was filled
    assert set(WORKDIR.iterdir()) == before, "map wrote into the folder it was run from"
    return root, m


def communities(root: Path, uris: list[str]) -> np.ndarray:
    """Ground truth: the generated community of each track (conftest's mpd_small: seed 7)."""
    cat = synth.Catalogue(synth.default_tracks(3000), 24, 7)
    return np.array([cat.community_of(synth.id_of_uri(u, 7)) for u in uris])


def test_layout_is_deterministic_for_a_seed():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((300, 16)).astype(np.float32)
    a, b = layout(v, 15, 0.3, random_seed=3), layout(v, 15, 0.3, random_seed=3)
    assert a.shape == (300, 2) and a.dtype == np.float32 and np.abs(a).max() <= 1.0
    np.testing.assert_array_equal(a, b)


def test_communities_come_out_as_separate_labelled_regions(mapped):
    from sklearn.neighbors import NearestNeighbors
    root, m = mapped
    t = storage.read_parquet(m.path("tracks.parquet"), schema=schemas.MAP_TRACKS)
    cfg = load_config(root=str(root))
    from musicmap.graph import embedded_tracks, load_tracks
    tracks = load_tracks(storage.open_committed(storage.stage_uri(cfg, "graph")))
    # the map places the tracks LightGCN embeds: the catalogue's first ones, fewer than all
    embedded = embedded_tracks(storage.open_committed(storage.stage_uri(cfg, "graph")),
                               cfg.model.embed_min_playlists)
    assert t["track_idx"].to_pylist() == list(range(embedded)) and 0 < embedded < tracks.num_rows
    tracks = tracks.slice(0, embedded)
    comm = communities(root, tracks["track_uri"].to_pylist())
    xy = np.stack([t["x"].to_numpy(), t["y"].to_numpy()], 1)
    # most tracks' nearest neighbours on the map are of their own community
    _, nn = NearestNeighbors(n_neighbors=11).fit(xy).kneighbors(xy)
    same = (comm[nn[:, 1:]] == comm[:, None]).mean()
    assert same > 0.8, same
    # each region is mostly one community, and its label names that community's title words
    region, labels = t["cluster"].to_numpy(), t["label"].to_pylist()
    named, purity = 0, []
    for r in np.unique(region):
        members = comm[region == r]
        major = np.bincount(members).argmax()
        purity.append((members == major).mean())
        label = labels[int(np.flatnonzero(region == r)[0])]
        named += bool(set(label.split(" · ")[0].split()) & set(synth.COMMUNITIES[major][1]))
    assert np.mean(purity) > 0.8 and named >= 0.7 * len(purity), (purity, named)


@pytest.fixture(scope="module")
def browser():
    if CHROMEDRIVER is None:
        pytest.skip("no chromedriver: apt-get install chromium chromium-driver (.ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900",
              "--use-angle=swiftshader", "--enable-unsafe-swiftshader"):   # WebGL without a GPU
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 30):
    end = time.time() + timeout
    while time.time() < end:
        v = driver.execute_script(script)
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {script}")


def test_the_page_draws_searches_and_lists_what_similar_lists(mapped, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from musicmap.recommend.context import load_context
    from musicmap.recommend.recommenders import LightGCNRecommender
    root, m = mapped
    ctx = load_context(load_config(root=str(root)), ranker=False)
    T = len(ctx.model.tracks)   # the map draws the tracks LightGCN embeds
    browser.get(Path(m.path("index.html")).as_uri())   # from the file system, as a user opens it
    wait_for(browser, "return window.musicmap && window.musicmap.ready")
    assert browser.execute_script("return [musicmap.tracks, musicmap.pointsDrawn]") == [T, T]
    # a known track: the most popular one whose name and artist are unique
    names, artists = ctx.tracks["track_name"].to_pylist(), ctx.tracks["artist_name"].to_pylist()
    pairs = list(zip(names, artists))
    order = np.argsort(-ctx.tracks["train_playlists"].to_numpy(), kind="stable")
    known = next(int(i) for i in order if pairs.count(pairs[i]) == 1)
    browser.find_element(By.ID, "search").send_keys(f"{names[known]} - {artists[known]}")
    hit = wait_for(browser, f"return document.querySelector('#results li[data-idx=\"{known}\"]')")
    hit.click()
    wait_for(browser, "return !musicmap.flying")
    # click the point itself on the canvas, where the map drew it
    browser.execute_script("musicmap.selected = -1")
    x, y = browser.execute_script(f"return musicmap.toScreen({known})")
    canvas = browser.find_element(By.ID, "map")
    w, h = canvas.size["width"], canvas.size["height"]
    ActionChains(browser).move_to_element_with_offset(canvas, int(x - w / 2), int(y - h / 2)).perform()
    assert wait_for(browser, "return document.getElementById('tip').textContent").startswith(names[known])
    ActionChains(browser).click().perform()
    assert browser.execute_script("return musicmap.selected") == known
    shown = [int(li.get_attribute("data-idx")) for li in browser.find_elements(By.CSS_SELECTOR, "#neighbours li")]
    p = musicmap("similar", "--root", str(root), "--track-uri", ctx.tracks["track_uri"][known].as_py(), "--k", "10")
    listed = [int(line.split("|")[1]) for line in p.stdout.splitlines() if line.strip().startswith("Rank")]
    assert shown == listed and len(listed) == 10
    # two seeds: the page's own fold-in recommends what the model's LightGCN fold-in recommends
    browser.find_element(By.ID, "add-seed").click()
    browser.find_element(By.CSS_SELECTOR, f"#neighbours li[data-idx=\"{listed[0]}\"]").click()
    wait_for(browser, "return !musicmap.flying")
    browser.find_element(By.ID, "add-seed").click()
    recs = wait_for(browser, "return musicmap.recommendations.length && musicmap.recommendations")
    seeds = [np.array([known, listed[0]], np.int64)]
    expected = LightGCNRecommender(ctx.model, None, "lightgcn").rank(seeds, [None], 20)[0][0]
    assert recs == expected.tolist()
    # colour by one artist, then look at the page
    browser.execute_script("document.getElementById('colour').value = 'artist';"
                           "document.getElementById('colour').dispatchEvent(new Event('change'))")
    browser.find_element(By.ID, "artist").send_keys(artists[known])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "map.png"))
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_the_pages_foldin_ranks_what_python_ranks(mapped, browser):
    """The page's JavaScript fold-in (lightgcn mode) against musicmap.train.foldin, for three
    seed sets of one, three and five tracks: the same top 10."""
    import torch

    from musicmap.topk import topk
    from musicmap.train.export import load_model
    from musicmap.train.foldin import seed_queries
    root, m = mapped
    model = load_model(str(root / "model"))
    browser.get(Path(m.path("index.html")).as_uri())
    wait_for(browser, "return window.musicmap && window.musicmap.ready")
    finals, foldin = torch.from_numpy(model.tracks), torch.from_numpy(model.foldin)
    rng = np.random.default_rng(5)
    for size in (1, 3, 5):
        seeds = [np.sort(rng.choice(len(model.tracks), size, replace=False)).astype(np.int64)]
        browser.execute_script(f"musicmap.setSeeds({seeds[0].tolist()})")
        page = browser.execute_script("return musicmap.recommendations")[:10]
        ours = topk(seed_queries(seeds, foldin, finals, "lightgcn"), finals, 10, exclude=seeds)[0][0]
        assert page == ours.tolist(), (size, page, ours.tolist())

