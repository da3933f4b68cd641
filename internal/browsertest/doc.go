// Package browsertest drives hubd's demo page in a real browser: a
// headless Chromium (Debian's chromium, through the DevTools protocol with
// chromedp) loads the page served by a real hubd, which is notified and
// kicked with the real hubctl. It has tests only.
package browsertest
