import { html } from 'htm/preact';
import { useEffect, useRef } from 'preact/hooks';
import { api } from '../api.js';
import { ErrorBox, Field, daysUntil, download, useLoad, when } from '../util.js';

const fmt = (n) => Number(n).toLocaleString('en-US');

/** Issuances and revocations per hour as bars (SVG attributes only: no inline style under the CSP). */
function HourlyChart({ hours }) {
  // on a narrow screen the chart scrolls sideways: start at the newest hours
  const scroller = useRef(null);
  useEffect(() => {
    const end = () => scroller.current && (scroller.current.scrollLeft = scroller.current.scrollWidth);
    end();
    window.addEventListener('resize', end);
    return () => window.removeEventListener('resize', end);
  }, [hours]);
  const W = 840;
  const H = 180;
  const pad = { l: 36, r: 8, t: 10, b: 28 };
  const n = hours.length;
  const max = Math.max(1, ...hours.map((h) => Math.max(h.issued, h.revoked)));
  const bw = (W - pad.l - pad.r) / n;
  const y = (v) => pad.t + (H - pad.t - pad.b) * (1 - v / max);
  const totalIssued = hours.reduce((a, h) => a + h.issued, 0);
  const totalRevoked = hours.reduce((a, h) => a + h.revoked, 0);
  const days = hours.filter((h) => new Date(h.hour).getUTCHours() === 0);
  const label = `Issuances and revocations per hour over the last ${Math.round(n / 24)} days: ${fmt(totalIssued)} issued, ${fmt(totalRevoked)} revoked; busiest hour ${fmt(max)}.`;
  return html`<figure class="chart">
     <div class="scroll" ref=${scroller} tabindex="0" role="group" aria-label="Chart (scrolls sideways on narrow screens)">
    <svg viewBox=${`0 0 ${W} ${H}`} role="img" aria-label=${label}>
      <line x1=${pad.l} x2=${W - pad.r} y1=${y(0)} y2=${y(0)} class="axis" />
      <line x1=${pad.l} x2=${W - pad.r} y1=${y(max)} y2=${y(max)} class="grid" />
      <text x=${pad.l - 4} y=${y(max) + 4} class="tick" text-anchor="end">${max}</text>
      <text x=${pad.l - 4} y=${y(0) + 4} class="tick" text-anchor="end">0</text>
      ${hours.map(
        (h, i) => html`<g>
          ${h.issued ? html`<rect x=${pad.l + i * bw} y=${y(h.issued)} width=${Math.max(1, bw * 0.55)} height=${y(0) - y(h.issued)} class="bar-issued"><title>${when(h.hour)}: ${h.issued} issued</title></rect>` : null}
          ${h.revoked ? html`<rect x=${pad.l + i * bw + bw * 0.5} y=${y(h.revoked)} width=${Math.max(1, bw * 0.45)} height=${y(0) - y(h.revoked)} class="bar-revoked"><title>${when(h.hour)}: ${h.revoked} revoked</title></rect>` : null}
        </g>`,
      )}
      ${days.map((d) => {
        const i = hours.indexOf(d);
        return html`<g><line x1=${pad.l + i * bw} x2=${pad.l + i * bw} y1=${y(0)} y2=${y(0) + 5} class="axis" /><text x=${pad.l + i * bw + 2} y=${H - 8} class="tick">${d.hour.slice(5, 10)}</text></g>`;
      })}
    </svg>
    </div>
    <figcaption><span class="key key-issued"></span> issued (${fmt(totalIssued)}) <span class="key key-revoked"></span> revoked (${fmt(totalRevoked)}), per hour, UTC</figcaption>
  </figure>`;
}

function Validity({ notBefore, notAfter }) {
  const d = daysUntil(notAfter);
  return html`${when(notBefore)} → ${when(notAfter)} <span class=${d < 7 ? 'warn' : 'muted'}>(${d >= 0 ? `${d} days left` : 'expired'})</span>`;
}

export function Overview() {
  const [o, error] = useLoad(() => api('GET', '/api/v1/overview'), []);
  const [stats, statsError] = useLoad(() => api('GET', '/api/v1/stats/hourly?hours=168'), []);
  const pem = async (which) => {
    const ca = await api('GET', '/api/v1/ca');
    download(which === 'chain' ? 'hsmca-chain.pem' : `hsmca-${which}.pem`, which === 'chain' ? ca.chain.join('') : ca[which]);
  };
  return html`<h1>Overview</h1>
    <${ErrorBox} error=${error} />
    ${!o && !error ? html`<p role="status">Loading…</p>` : null}
    ${o &&
    html`<div class="cards two">
      <section class="card" aria-labelledby="h-chain">
        <h2 id="h-chain">CA chain</h2>
        <dl>
          <${Field} label="Issuing CA">${o.ca.issuer.subject}<br /><${Validity} ...${o.ca.issuer} /><//>
          <${Field} label="Root CA">${o.ca.root.subject}<br /><${Validity} ...${o.ca.root} /><//>
        </dl>
        <p class="actions">
          <a class="button secondary" href="/ca/root.crt" download="hsmca-root.crt">Root (DER)</a>
          <a class="button secondary" href="/ca/issuer.crt" download="hsmca-issuer.crt">Issuing CA (DER)</a>
          <button type="button" class="secondary" onClick=${() => pem('chain')}>Chain (PEM)</button>
        </p>
      </section>
      <section class="card" aria-labelledby="h-hsm">
        <h2 id="h-hsm">HSM</h2>
        <p>${o.hsm.kind === 'soft' ? 'Software HSM' : 'PKCS#11'}: <span class=${`badge badge-${o.hsm.status}`}>${o.hsm.status}</span></p>
        <ul class="plain">
          ${o.hsm.tokens.map((t) => html`<li>Token <strong>${t.label}</strong> <span class=${`badge badge-${t.status}`}>${t.status}</span>${t.error ? html` <span class="warn">${t.error}</span>` : null}</li>`)}
        </ul>
      </section>
      <section class="card" aria-labelledby="h-status">
        <h2 id="h-status">Revocation status</h2>
        <dl>
          ${o.crl
            ? html`<${Field} label="CRL number">${o.crl.crlNumber} <span class="muted">(${fmt(o.crl.entries)} ${o.crl.entries === 1 ? 'entry' : 'entries'})</span><//>
                <${Field} label="CRL next update">${when(o.crl.nextUpdate)}<//>`
            : html`<${Field} label="CRL">none yet<//>`}
          <${Field} label="OCSP signer">${o.ocspSigner.subject}<br /><${Validity} ...${o.ocspSigner} /><//>
        </dl>
        <p class="actions"><a class="button secondary" href="/crl" download="hsmca.crl">Download CRL</a></p>
      </section>
      <section class="card" aria-labelledby="h-counts">
        <h2 id="h-counts">Certificates</h2>
        <dl class="counts">
          <${Field} label="Issued">${fmt(o.counts.total)}<//>
          <${Field} label="Good">${fmt(o.counts.good)}<//>
          <${Field} label="Revoked">${fmt(o.counts.revoked)}<//>
        </dl>
        <p class="muted small">Counted ${when(o.counts.countedAt)} (refreshed at most once a minute). Good includes expired certificates.</p>
      </section>
    </div>`}
    <section class="card wide" aria-labelledby="h-chart">
      <h2 id="h-chart">Issuances and revocations, last 7 days</h2>
      <${ErrorBox} error=${statsError} />
      ${stats ? html`<${HourlyChart} hours=${stats.hours} />` : statsError ? null : html`<p role="status">Loading…</p>`}
    </section>`;
}
