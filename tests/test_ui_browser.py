"""The web page in a real browser: Debian's chromium, headless, driven by selenium through
Debian's chromium-driver (nothing downloaded). Screenshots go to test-artifacts/ui/.

Marked slow: it starts chromium and chromedriver processes."""

from __future__ import annotations

import base64
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Server, ServerFactory, make_image, upload_blob

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "ui"
ACCOUNT = "123456789012"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)
EVIL = "<script>alert('x')</script>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for tool in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(tool), f"{tool} missing: make test installs chromium chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str) -> Path:
    """A full-page PNG under test-artifacts/ui/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(700, min(int(height) + 40, 4000)))
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)
    return path


def no_alert(driver: Any) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        driver.switch_to.alert  # noqa: B018 (raises when there is none)
    except NoAlertPresentException:
        return True
    return False


def fill(ecr: Any) -> tuple[str, str, str]:
    """Two repositories: team/app (a few tagged images, one multi-arch) and team/tools (an
    image whose manifest and config carry markup). Returns team/app's index digest, one child
    digest and the markup image's digest."""
    ecr.create_repository(repositoryName="team/app", imageTagMutability="IMMUTABLE")
    ecr.create_repository(
        repositoryName="team/tools", imageScanningConfiguration={"scanOnPush": True}
    )
    children = []
    for arch in ("amd64", "arm64"):
        raw = make_image(ecr, "team/app", seed=arch, layers=3)
        digest = ecr.put_image(repositoryName="team/app", imageManifest=raw.decode())["image"][
            "imageId"
        ]["imageDigest"]
        children.append(
            {
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "digest": digest,
                "size": len(raw),
                "platform": {"os": "linux", "architecture": arch},
            }
        )
    for tag in ("1.0.0", "1.1.0", "2.0.0-rc1"):
        raw = make_image(ecr, "team/app", seed=tag, layers=2)
        ecr.put_image(repositoryName="team/app", imageTag=tag, imageManifest=raw.decode())
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests": children,
        }
    )
    top = ecr.put_image(repositoryName="team/app", imageTag="latest", imageManifest=index)["image"][
        "imageId"
    ]["imageDigest"]

    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"x": EVIL}}})
    config_digest = upload_blob(ecr, "team/tools", config.encode())
    layer = b"layer " + uuid.uuid4().bytes
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": len(config),
            "digest": config_digest,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "size": len(layer),
                "digest": upload_blob(ecr, "team/tools", layer),
            }
        ],
        "annotations": {"org.opencontainers.image.title": EVIL},
    }
    evil = ecr.put_image(
        repositoryName="team/tools", imageTag="evil", imageManifest=json.dumps(manifest)
    )["image"]["imageId"]["imageDigest"]
    return top, children[0]["digest"], evil


def test_a_browser_walks_the_page_from_slash_to_one_image(
    make_server: ServerFactory, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    server = make_server()
    top, child, evil = fill(server.client())
    driver = browser

    driver.get(server.endpoint + "/")  # a browser's GET / lands on the page
    assert driver.current_url == server.endpoint + "/ui/"
    assert driver.title == "Registries · openecr"
    screenshot(driver, "1-registries")

    driver.find_element(By.LINK_TEXT, ACCOUNT).click()
    rows = driver.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [r.find_element(By.TAG_NAME, "a").text for r in rows] == ["team/app", "team/tools"]
    assert rows[0].find_elements(By.TAG_NAME, "td")[1].text == "6"  # images
    assert "immutable" in rows[0].text and "on" in rows[1].text
    # the stylesheet applied: the header bar is dark
    header = driver.find_element(By.CSS_SELECTOR, "header.top")
    assert header.value_of_css_property("background-color") == "rgba(20, 32, 51, 1)"
    screenshot(driver, "2-repositories")

    driver.find_element(By.LINK_TEXT, "team/app").click()
    assert driver.find_element(By.TAG_NAME, "h1").text == "team/app"
    assert len(driver.find_elements(By.CSS_SELECTOR, "tbody tr")) == 6
    screenshot(driver, "3-images")

    box = driver.find_element(By.ID, "tag")
    box.send_keys("1.")
    unfiltered = driver.find_element(By.TAG_NAME, "tbody")
    box.submit()
    # the form loads a new page: read its table once the old one is gone
    WebDriverWait(driver, 10).until(expected_conditions.staleness_of(unfiltered))
    tags = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "tbody .tag")]
    assert tags == ["1.0.0", "1.1.0"]
    assert "tag=1." in driver.current_url
    screenshot(driver, "4-images-filtered")

    driver.get(f"{server.endpoint}/ui/{ACCOUNT}/team/app@{top}")
    platforms = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert any("linux/amd64" in p for p in platforms)
    pull = driver.find_element(By.ID, "pull").get_attribute("value")
    assert pull == f"docker pull 127.0.0.1:{server.port}/team/app@{top}"
    screenshot(driver, "5-index")

    driver.find_element(By.PARTIAL_LINK_TEXT, child.split(":")[1][:12]).click()
    assert "Layers" in driver.page_source and "Config" in driver.page_source
    assert len(driver.find_elements(By.CSS_SELECTOR, "h2 + table tbody tr")) >= 3
    screenshot(driver, "6-image")

    driver.get(f"{server.endpoint}/ui/{ACCOUNT}/team/tools@{evil}")
    assert no_alert(driver)
    assert EVIL in driver.find_element(By.CSS_SELECTOR, "pre.json").text  # shown as text
    assert not driver.find_elements(By.CSS_SELECTOR, "main script")
    screenshot(driver, "7-markup-shown-as-text")


def test_with_credentials_the_browser_signs_in_with_basic(
    make_server: ServerFactory, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    credentials = tmp_path / "credentials.toml"
    credentials.write_text(
        '[[credentials]]\naccess_key_id = "AKIDBROWSER"\nsecret_access_key = "browser-secret"\n'
        f'account_id = "{ACCOUNT}"\n'
    )
    server: Server = make_server("--credentials", str(credentials))
    client = server.client(aws_access_key_id="AKIDBROWSER", aws_secret_access_key="browser-secret")
    client.create_repository(repositoryName="private/app")

    # unsigned, the browser is challenged (headless chromium shows no dialog, and no page)
    browser.get(f"{server.endpoint}/ui/{ACCOUNT}/")
    assert "private/app" not in browser.page_source

    token = base64.b64encode(b"AKIDBROWSER:browser-secret").decode()
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
    )
    try:
        browser.get(f"{server.endpoint}/ui/{ACCOUNT}/")
        assert "private/app" in browser.find_element(By.TAG_NAME, "tbody").text
        screenshot(browser, "8-signed-in")
    finally:
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
