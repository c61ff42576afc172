// Stands in for MathJax 2 when no CDN is reachable (grading rooms, offline laptops).
// The formgrader's scripts call MathJax.Hub before they bind their keyboard
// shortcuts; without MathJax every shortcut dies. Formulas show as their TeX source.
(function () {
  "use strict";
  if (window.MathJax && window.MathJax.Hub) return;
  window.MathJax = {
    Hub: {
      Config: function () {},
      Queue: function () {},
      Typeset: function () {},
      Startup: {signal: {Interest: function (listener) { setTimeout(function () { listener("End"); }, 0); }}}
    }
  };
})();
