import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MaskingPolicy } from '../config/contract.js';
import { SseParser } from '../usage/sse.js';
import { maskRequest, OutputTransform, Tally } from './engine.js';
import { compileMasking } from './compiled.js';
import { SseMasking } from './sse.js';

const masking = compileMasking(
  MaskingPolicy.parse({
    detectors: ['EMAIL', 'PERSON', 'STREET_ADDRESS', 'DATE_OF_BIRTH'],
    scanResponses: true,
  }),
);
const PROMPT =
  'Hi, my name is Ada Lovelace, born on 1815-12-10. Ship to 12 St James Square, London SW1Y 4LE, ' +
  'and copy ada@example.com.';

async function maskedPrompt(): Promise<{
  body: { messages: { content: string }[] };
  t: OutputTransform;
}> {
  const body = { model: 'm', messages: [{ role: 'user', content: PROMPT }] };
  const r = await maskRequest({
    masking,
    shadow: false,
    operation: 'chat',
    body,
    tally: new Tally(),
  });
  return { body, t: new OutputTransform(masking, false, r.lookup, new Tally()) };
}

describe('names, addresses and dates of birth survive the round trip', () => {
  it('are masked as reversible placeholders and restored in the answer', async () => {
    const { body, t } = await maskedPrompt();
    const sent = body.messages[0]!.content;
    assert.equal(
      sent,
      'Hi, my name is [PERSON_1], born on [DATE_OF_BIRTH_1]. Ship to [STREET_ADDRESS_1], and copy [EMAIL_1].',
    );
    assert.equal(
      t.whole('Dear [PERSON_1], we ship to [STREET_ADDRESS_1].'),
      'Dear Ada Lovelace, we ship to 12 St James Square, London SW1Y 4LE.',
    );
  });

  it('restores a placeholder the model writes in another case or with a possessive', async () => {
    const { t } = await maskedPrompt();
    assert.equal(
      t.whole("[PERSON_1]'s order; [Person_1] and [person_1] were born on [date_of_birth_1]."),
      "Ada Lovelace's order; Ada Lovelace and Ada Lovelace were born on 1815-12-10.",
    );
  });

  it('restores when streamed, whatever the chunking', async () => {
    const { t } = await maskedPrompt();
    const answer = "Thanks [Person_1]! [PERSON_1]'s parcel goes to [STREET_ADDRESS_1].";
    const want =
      "Thanks Ada Lovelace! Ada Lovelace's parcel goes to 12 St James Square, London SW1Y 4LE.";
    for (let cut = 1; cut < 12; cut++) {
      const m = new SseMasking('chat', t);
      const parser = new SseParser();
      let sse = '';
      for (let i = 0; i < answer.length; i += cut) {
        const delta = { choices: [{ index: 0, delta: { content: answer.slice(i, i + cut) } }] };
        sse += `data: ${JSON.stringify(delta)}\n\n`;
      }
      sse += 'data: [DONE]\n\n';
      const out: Buffer[] = [];
      for (const e of parser.push(Buffer.from(sse))) out.push(...m.onEvent(e));
      out.push(...m.end());
      let text = '';
      for (const line of Buffer.concat(out).toString('utf8').split('\n')) {
        if (!line.startsWith('data: {')) continue;
        const o = JSON.parse(line.slice(6)) as { choices: { delta: { content?: string } }[] };
        text += o.choices[0]?.delta.content ?? '';
      }
      assert.equal(text, want, `chunks of ${cut}`);
    }
  });

  it('are off unless the policy lists them', () => {
    const m = compileMasking(MaskingPolicy.parse({}));
    assert.deepEqual(
      m.detectors.detect(PROMPT).map((f) => f.type),
      ['EMAIL'],
    );
  });
});
