#include "event.h"

#include <string.h>

static const char *const channel_names[] = {
    [CHANNEL_SMS] = "sms",
    [CHANNEL_EMAIL] = "email",
    [CHANNEL_PHONE] = "phone",
    [CHANNEL_SOCIAL] = "social",
};

const char *channel_name(enum channel ch)
{
	if (ch <= CHANNEL_NONE || ch > CHANNEL_MAX)
		return NULL;
	return channel_names[ch];
}

enum channel channel_from_name(const char *s)
{
	for (int ch = 1; ch <= CHANNEL_MAX; ch++)
		if (strcmp(s, channel_names[ch]) == 0)
			return (enum channel)ch;
	return CHANNEL_NONE;
}
