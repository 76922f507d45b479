"""Drives the chat page in headless Chromium (Debian's chromium and chromium-driver).

Usage: python3 web_chat.py BASE_URL MODEL IMAGE_PATH PROMPT

Attaches the image, sends the prompt greedily (temperature 0, 16 tokens) and waits for the
streamed answer; then starts a long answer, waits until text is streaming and presses Stop.
Prints one JSON object with what the page showed.
"""

import json
import shutil
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def browser() -> webdriver.Chrome:
    options = Options()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)


def text_of(driver, selector: str) -> str:
    elements = driver.find_elements(By.CSS_SELECTOR, selector)
    return elements[-1].get_property("textContent") if elements else ""


def state(driver) -> str:
    return driver.find_element(By.ID, "status").get_attribute("data-state")


def set_field(driver, element_id: str, value: str) -> None:
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


def main() -> None:
    base_url, model, image, prompt = sys.argv[1:5]
    driver = browser()
    report = {}
    try:
        driver.get(base_url + "/")
        wait = WebDriverWait(driver, 60, poll_frequency=0.01)
        wait.until(lambda d: d.find_element(By.ID, "model-name").text == model)
        driver.find_element(By.ID, "settings-toggle").click()
        set_field(driver, "temperature", "0")
        set_field(driver, "max-tokens", "16")

        driver.find_element(By.ID, "attach").send_keys(image)
        wait.until(lambda d: d.find_element(By.ID, "attachment").get_attribute("data-ready") == "true")
        driver.find_element(By.ID, "prompt").send_keys(prompt)
        driver.find_element(By.ID, "send").click()
        wait.until(lambda d: state(d) in ("done", "error"))
        report["state"] = state(driver)
        report["answer"] = text_of(driver, ".msg.assistant .answer")
        report["stats"] = text_of(driver, ".msg.assistant .stats")
        report["user_has_image"] = bool(driver.find_elements(By.CSS_SELECTOR, ".msg.user img"))

        # A long answer, stopped while it streams.
        driver.find_element(By.ID, "new-chat").click()
        set_field(driver, "max-tokens", "30000")
        driver.find_element(By.ID, "prompt").send_keys("Hello! Please write a short poem about the sea.")
        driver.find_element(By.ID, "send").click()
        wait.until(lambda d: state(d) == "streaming" and len(text_of(d, ".msg.assistant .answer")) > 0)
        report["streaming_text_seen"] = len(text_of(driver, ".msg.assistant .answer"))
        time.sleep(0.2)
        report["stop_visible"] = driver.find_element(By.ID, "stop").is_displayed()
        driver.find_element(By.ID, "stop").click()
        wait.until(lambda d: state(d) in ("done", "error"))
        report["stopped_state"] = state(driver)
        report["stopped_status"] = driver.find_element(By.ID, "status").text
        report["stopped_stats"] = text_of(driver, ".msg.assistant .stats")
        report["console_errors"] = [
            entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"
        ]
    finally:
        driver.quit()
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
