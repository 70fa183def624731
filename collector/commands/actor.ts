/** Who a CLI change is audited as. Its own module: the serving collector's feed audit uses it too. */
import { userInfo } from 'node:os';

/** `cli:<unix user>`; a uid without a passwd entry (containers) is named by its number. */
export function cliActor(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return `cli:uid-${process.getuid?.() ?? 'unknown'}`;
  }
}
