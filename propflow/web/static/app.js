// The inbox's countdowns and the step form's "required when" rules. No framework: htmx
// swaps fragments in, and these work on whatever is on the page at each tick or change.
(function () {
  "use strict";
  var zh = (document.documentElement.lang || "zh-CN") !== "en";

  function span(ms) {
    var s = Math.floor(Math.abs(ms) / 1000), d = Math.floor(s / 86400),
        h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), sec = s % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    if (zh) {
      if (d) return d + "天" + h + "小时";
      if (h) return h + "小时" + pad(m) + "分";
      return m + "分" + pad(sec) + "秒";
    }
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + pad(m) + "m";
    return m + "m " + pad(sec) + "s";
  }

  // The server's clock (data-now, possibly a training clock) runs on from when the element
  // was first seen, so a browser whose own clock is wrong still counts right.
  function tick() {
    var nodes = document.querySelectorAll("[data-due]");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      if (!el._seen) el._seen = Date.now();
      var now = Date.parse(el.dataset.now) + (Date.now() - el._seen);
      var left = Date.parse(el.dataset.due) - now;
      if (isNaN(left)) continue;
      el.textContent = left > 0 ? (zh ? "剩余 " : "") + span(left) + (zh ? "" : " left")
                                : (zh ? "已超时 " : "overdue ") + span(left);
      el.classList.toggle("late", left <= 0);
    }
  }

  // A field the rule requires only after some answer (a reason when accepted = no).
  function requiredWhen() {
    var nodes = document.querySelectorAll("[data-required-when]");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i], rule = el.dataset.requiredWhen.split("=");
      var chosen = document.querySelector("input[name='" + rule[0] + "']:checked");
      var on = !!chosen && chosen.value === rule[1];
      var inputs = el.matches("input,textarea,select") ? [el] : el.querySelectorAll("input");
      for (var j = 0; j < inputs.length; j++) {
        if (inputs[j].type === "radio" && j > 0) continue;
        inputs[j].required = on;
      }
      var field = el.closest(".field");
      if (field) field.classList.toggle("required-now", on);
    }
  }

  document.addEventListener("change", requiredWhen);
  document.addEventListener("DOMContentLoaded", function () { tick(); requiredWhen(); });
  document.addEventListener("htmx:afterSwap", tick);
  setInterval(tick, 1000);
})();
