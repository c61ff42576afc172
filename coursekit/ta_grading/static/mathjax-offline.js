// MathJax 2's interface for nbgrader's formgrader, with KaTeX from the kit doing the rendering:
// no CDN, so formulas show in grading rooms and on offline laptops. The formgrader's
// scripts bind their keyboard shortcuts once MathJax's startup signal says "End".
(function () {
  "use strict";
  if (window.MathJax && window.MathJax.Hub) return;
  let started = false;
  const listeners = [];

  function typeset(element) {
    if (window.renderFormulas) window.renderFormulas(element || document.body);
  }

  function start() {
    typeset(document.body);
    started = true;
    listeners.splice(0).forEach(function (listener) { listener("End"); });
  }

  window.MathJax = {
    Hub: {
      Config: function () {},
      // Queue(["Typeset", MathJax.Hub, element], callback, ...): before the page is read, start() does it.
      Queue: function () {
        Array.prototype.forEach.call(arguments, function (item) {
          if (Array.isArray(item) && item[0] === "Typeset") { if (started) typeset(item[2]); }
          else if (typeof item === "function") item();
        });
      },
      Typeset: function (element, callback) {
        if (started) typeset(element);
        if (typeof callback === "function") callback();
      },
      Startup: {signal: {Interest: function (listener) {
        if (started) setTimeout(function () { listener("End"); }, 0);
        else listeners.push(listener);
      }}}
    }
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else setTimeout(start, 0);
})();
