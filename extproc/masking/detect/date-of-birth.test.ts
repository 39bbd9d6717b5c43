import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDetectors } from './index.js';

const set = createDetectors({ types: ['DATE_OF_BIRTH'] });
function found(text: string): string[] {
  return set.detect(text).map((f) => text.slice(f.start, f.end));
}

function each(cases: [string, string][]): void {
  for (const [text, date] of cases) assert.deepEqual(found(text), [date], text);
}

function none(texts: string[]): void {
  for (const text of texts) assert.deepEqual(found(text), [], text);
}

test('DATE_OF_BIRTH: English birth words and the date formats people write', () => {
  each([
    ['DOB: 3rd of May 1984', '3rd of May 1984'],
    ['d.o.b. May 3, 1984', 'May 3, 1984'],
    ['D.O.B.: 1984-05-03', '1984-05-03'],
    ['born on 03/05/84', '03/05/84'],
    ['My birthday is May 3rd, 1984.', 'May 3rd, 1984'],
    ['birthdate: 3 May, 1984', '3 May, 1984'],
    ['I was born on the 3rd of May, 1984 in Leeds', '3rd of May, 1984'],
    ['Birthday: Thursday, May 3, 1984', 'May 3, 1984'],
    ['born in Leeds on 3rd May 1984', '3rd May 1984'],
    ['Born: Apr. 12, 1985', 'Apr. 12, 1985'],
    ['dob=1984-05-03', '1984-05-03'],
    ['"dob": "1984/05/03"', '1984/05/03'],
    ['Date of Birth | 03/05/1984 |', '03/05/1984'],
    ['Ada Lovelace (b. 10 December 1815)', '10 December 1815'],
    ['Ada Lovelace, b. 1815-12-10', '1815-12-10'],
  ]);
});

test('DATE_OF_BIRTH: the date on the line after its label, or a label after the date', () => {
  each([
    ['Date of birth:\n1984-05-03', '1984-05-03'],
    ['Date of birth\n\n03/05/1984', '03/05/1984'],
    // Text escaped once more (JSON in a prompt): a written-out `\n` ends the line too.
    ['DOB:\\n03.05.1984', '03.05.1984'],
    ['1984-05-03 (date of birth)', '1984-05-03'],
    ['Applicant 3 March 1990 [DOB]', '3 March 1990'],
  ]);
});

test('DATE_OF_BIRTH: birth words and month names of the languages the corpus names come from', () => {
  each([
    ['geboren am 3. Mai 1984', '3. Mai 1984'],
    ['geb. 03.05.1984', '03.05.1984'],
    ['geboortedatum: 03-05-1984', '03-05-1984'],
    ['date de naissance : 03/05/1984', '03/05/1984'],
    ['née le 3 mai 1984', '3 mai 1984'],
    ['nacido el 3 de mayo de 1984', '3 de mayo de 1984'],
    ['data di nascita 03/05/1984', '03/05/1984'],
    ['nato il 3 maggio 1984', '3 maggio 1984'],
    ['data de nascimento: 3 de maio de 1984', '3 de maio de 1984'],
    ['data nașterii: 03.05.1984', '03.05.1984'],
    ['data urodzenia: 3 maja 1984', '3 maja 1984'],
    ['datum narození: 3. 5. 1984', '3. 5. 1984'],
    ['narozena 3. května 1984', '3. května 1984'],
    ['datum rođenja: 03.05.1984.', '03.05.1984'],
    ['születési dátum: 1984.05.03.', '1984.05.03'],
    ['született 1984. május 3.', '1984. május 3'],
    ['syntymäaika: 3. toukokuuta 1984', '3. toukokuuta 1984'],
    ['doğum tarihi: 3 Mayıs 1984', '3 Mayıs 1984'],
    ['födelsedatum: 1984-05-03', '1984-05-03'],
    ['fødselsdato: 03.05.1984', '03.05.1984'],
    ['дата рождения: 03.05.1984', '03.05.1984'],
    ['生年月日：1984年5月3日', '1984年5月3日'],
    ['생년월일: 1984년 5월 3일', '1984년 5월 3일'],
  ]);
});

test('DATE_OF_BIRTH: look-alikes stay unmasked', () => {
  none([
    // Dates in other contexts, no birth word.
    'The invoice dated 03/05/1984 is overdue',
    'Deadline: May 3, 1984',
    'Shipped 12-Apr-1985 (no birth word)',
    // The external set labels this template's date as a birth date; nothing here says so.
    "It's like that since 8/18/1992",
    // A birth word, but another date word between it and the date.
    'She was born in Leeds. The invoice is due 2024-05-12.',
    'born 1950; hired on 1980-05-03',
    'Birthday party on 2024-05-12 at 6pm',
    'born to run, released 1984-05-03',
    'The idea was born at the kickoff; the deadline is 2024-06-01.',
    'Birth certificate issued 2024-05-12',
    // Birth words inside other words, or that are something else.
    'Newborn checkup on 2024-05-12',
    'Airborne since 2020-01-01',
    'NATO summit on 9 July 2024',
    'I need 3 May 2024 off',
    // `b.` as a list's letter after a value, and abbreviations far from the date.
    'a. 2024-01-01 b. 2024-05-12',
    'geb. Müller, married since 03.05.1984',
    // Not dates.
    'DOB field: 13/13/2020',
    'born on 1984-13-03',
    'DOB 555-123-4567',
    'born 12 Apr 850',
    'DOB 12 April 19855',
  ]);
});

test('DATE_OF_BIRTH: a birth date among other dates keeps only its own', () => {
  assert.deepEqual(found('Born 3 May 1984, hired 2010-06-01, DOB confirmed.'), ['3 May 1984']);
  assert.deepEqual(found('Invoice 2024-05-12. Patient DOB: 1984-05-03'), ['1984-05-03']);
});
